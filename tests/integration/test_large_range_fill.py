"""A Range request that misses on an object too large to wait for (over range_fill_max_size)
still fills the cache when the disk tier takes the object (issue 3): the client's range is
answered at once by a ranged origin request passed through, while the whole object the proxy
asked for goes on in the background, spills and lands on disk; later ranges are disk hits.
Without a disk tier, or for an object the disk would not take, it is as before: the range is
passed through and nothing is stored (RFC 9111 §3.3: a 206 is not stored)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.integration.conftest import Origin, Proxy, start_proxy
from tests.integration.origin_app import stamped_body
from tests.integration.test_large_disk import get_raw, split, wait_on_disk

MiB = 1024 * 1024
SIZE = 3 * MiB + 4321  # over memory's object limit and the range fill limit below
PART = 64 * 1024  # the first range: what the origin answers the ranged request with
FRESH = ["Cache-Control", "max-age=300"]
ETAG = ["ETag", '"range-v1"']
# Memory admits 1 MiB, a Range miss waits for whole objects up to 1 MiB: this one is neither.
FLAGS = ("--memory", "8MiB", "--max-object-size", "1MiB", "--range-fill-max-size", "1MiB")


@pytest.fixture(scope="module")
def body() -> bytes:
    return stamped_body(SIZE)


@contextmanager
def started(origin: Origin, tmp_path: Path, *flags: str) -> Iterator[Proxy]:
    proxy = start_proxy(origin.url, tmp_path / "c", *FLAGS, *flags)
    try:
        yield proxy
    finally:
        proxy.stop()


@pytest.fixture
def proxy(origin: Origin, tmp_path: Path) -> Iterator[Proxy]:
    with started(origin, tmp_path) as proxy:
        yield proxy


def script_whole_then_ranged(origin: Origin, path: str) -> None:
    """The first request (the proxy's, without Range) gets the whole object; every later one
    the first PART bytes as a 206 (the origin honouring the client's Range)."""
    content_range = ["Content-Range", f"bytes 0-{PART - 1}/{SIZE}"]
    origin.script(
        path,
        {"headers": [FRESH, ETAG], "stamped_size": SIZE},
        {"status": 206, "headers": [FRESH, ETAG, content_range], "stamped_size": PART},
    )


def range_header(value: str) -> str:
    return f"Range: {value}\r\n"


def sent_range(request: dict[str, object]) -> str | None:
    headers = request["headers"]
    assert isinstance(headers, list)
    return next((v for n, v in headers if n.lower() == "range"), None)


def test_range_miss_answered_at_once_and_object_lands_on_disk_rfc9110_s14_2(
    proxy: Proxy, origin: Origin, path: str, body: bytes
) -> None:
    script_whole_then_ranged(origin, path)
    status, fields, got = split(get_raw(proxy, path, range_header(f"bytes=0-{PART - 1}")))
    assert (status, fields["x-cache-status"]) == (206, "MISS")
    assert fields["content-range"] == f"bytes 0-{PART - 1}/{SIZE}"
    assert got == body[:PART]

    # A plain GET meanwhile joins the background fill (or, once it landed, hits the disk).
    status, fields, got = split(get_raw(proxy, path))
    assert status == 200
    assert got == body

    wait_on_disk(proxy)
    requests = origin.requests(path)
    # One whole-object request for the cache (no Range), and the client's own ranged one.
    assert [sent_range(r) for r in requests] == [None, f"bytes=0-{PART - 1}"]

    start, end = MiB + 3, 2 * MiB + 10  # crosses the disk entry's 1 MiB chunks
    status, fields, got = split(get_raw(proxy, path, range_header(f"bytes={start}-{end}")))
    assert (status, fields["x-cache-status"]) == (206, "HIT")  # RFC 9110 §14.4
    assert fields["content-range"] == f"bytes {start}-{end}/{SIZE}"
    assert got == body[start : end + 1]

    status, fields, got = split(get_raw(proxy, path, range_header("bytes=0-")))
    assert (status, fields["x-cache-status"]) == (206, "HIT")
    assert fields["content-range"] == f"bytes 0-{SIZE - 1}/{SIZE}"
    assert got == body

    status, fields, got = split(get_raw(proxy, path))
    assert (status, fields["x-cache-status"]) == (200, "HIT")
    assert got == body
    assert origin.count(path) == 2


@pytest.mark.parametrize(
    "flags",
    [("--disk", "0"), ("--disk-max-object-size", "2MiB")],
    ids=["no-disk-tier", "too-large-for-disk"],
)
def test_range_miss_passes_through_unstored_when_the_disk_cannot_take_it_rfc9111_s3_3(
    origin: Origin, tmp_path: Path, path: str, body: bytes, flags: tuple[str, ...]
) -> None:
    with started(origin, tmp_path, *flags) as proxy:
        script_whole_then_ranged(origin, path)
        for _ in range(2):
            status, fields, got = split(get_raw(proxy, path, range_header(f"bytes=0-{PART - 1}")))
            assert status == 206
            assert fields["x-cache-status"] != "HIT"
            assert got == body[:PART]
        requests = origin.requests(path)
        # The dropped whole-object answer, the first range; then the key is hit-for-miss and
        # the second range goes straight through.
        assert [sent_range(r) for r in requests] == [None, *[f"bytes=0-{PART - 1}"] * 2]
