"""Objects larger than the cache's object limit are still collapsed (issue 3: one origin request
for N concurrent misses) and streamed to every client from a file, not buffered in memory; an
origin failure mid-body still never looks complete. The RSS numbers for 1 GiB and 20 clients
are measured by bench/stream_rss.py, not asserted here."""

from __future__ import annotations

import hashlib
import json
import re
import socket
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.integration.conftest import (
    Origin,
    Proxy,
    ProxyFactory,
    read_until_close,
    start_proxy,
)

FRESH = ["Cache-Control", "max-age=300"]
MiB = 1024 * 1024
LARGE = 64 * MiB  # sixteen times the object limit below
CLIENTS = 5


@pytest.fixture(scope="module")
def small_limit(
    origin: Origin, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Proxy, Path]]:
    cache_dir = tmp_path_factory.mktemp("large-collapse")
    # Over every tier's limit: memory's and the disk's (a larger disk limit stores large objects
    # from their spill file: tests/integration/test_large_disk.py).
    proxy = start_proxy(
        origin.url, cache_dir, "--max-object-size", "4MiB", "--disk-max-object-size", "4MiB"
    )
    yield proxy, cache_dir
    proxy.stop()


def get_raw(proxy: Proxy, path: str) -> bytes:
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=60) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n".encode())
        return read_until_close(sock, 60.0)


def body_of(raw: bytes) -> tuple[bytes, bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    if b"transfer-encoding: chunked" in head.lower():
        body = dechunk(body)
    return head, body


def dechunk(data: bytes) -> bytes:
    out = bytearray()
    at = 0
    while True:
        line_end = data.index(b"\r\n", at)
        size = int(data[at:line_end].split(b";")[0], 16)
        if size == 0:
            return bytes(out)
        out += data[line_end + 2 : line_end + 2 + size]
        at = line_end + 2 + size + 2


def concurrent_gets(proxy: Proxy, path: str, clients: int = CLIENTS) -> list[bytes]:
    with ThreadPoolExecutor(max_workers=clients) as pool:
        return list(pool.map(lambda _: get_raw(proxy, path), range(clients)))


@pytest.mark.parametrize("framing", ["length", "chunked"])
def test_an_object_over_the_limit_is_fetched_once_for_concurrent_clients(
    small_limit: tuple[Proxy, Path], origin: Origin, path: str, framing: str
) -> None:
    proxy, _ = small_limit
    # The delay holds the origin's answer until every client has asked. (The order of the
    # bytes read back from the spill file is checked in tests/unit/test_fill_spill.py and, with
    # position-stamped blocks, by bench/stream_rss.py.)
    origin.script(
        path, {"headers": [FRESH], "body_size": LARGE, "framing": framing, "delay_s": 1.0}
    )
    digest = hashlib.sha256(b"x" * LARGE).digest()
    raws = concurrent_gets(proxy, path)
    assert origin.count(path) == 1
    for raw in raws:
        head, got = body_of(raw)
        assert head.startswith(b"HTTP/1.1 200")
        assert len(got) == LARGE
        assert hashlib.sha256(got).digest() == digest


def test_an_object_over_the_limit_is_shared_but_not_stored(
    small_limit: tuple[Proxy, Path], origin: Origin, path: str
) -> None:
    proxy, cache_dir = small_limit
    origin.script(path, {"headers": [FRESH], "body_size": 8 * MiB, "delay_s": 0.5})
    concurrent_gets(proxy, path, 3)
    assert origin.count(path) == 1
    after = proxy.get(path, headers={"Host": "a.test"})  # the fill is over: a miss, not a hit
    assert after.header("X-Cache-Status") == "MISS"
    assert len(after.body) == 8 * MiB
    assert origin.count(path) == 2
    # The spilled body lived in an anonymous file: nothing is left beside the disk tier's own.
    leftovers = [p.name for p in (cache_dir / "objects").iterdir() if p.is_file()]
    assert leftovers == []


def test_a_large_collapsed_fill_cut_by_the_origin_never_looks_complete(
    small_limit: tuple[Proxy, Path], origin: Origin, path: str
) -> None:
    size = 12 * MiB
    origin.script(
        path,
        {"headers": [FRESH], "body_size": size, "fault": "reset_mid_body", "delay_s": 0.5},
        {"headers": [FRESH], "body_size": size},
    )
    proxy, _ = small_limit
    for raw in concurrent_gets(proxy, path, 4):
        head, _, body = raw.partition(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 200"):
            assert head.startswith((b"HTTP/1.1 502", b"HTTP/1.1 504")) or raw == b""
            continue
        assert f"content-length: {size}".encode() in head.lower()
        assert len(body) < size, "a short body was framed as complete"
    assert origin.count(path) == 1


def test_the_leader_leaving_a_large_fill_does_not_hurt_the_others(
    small_limit: tuple[Proxy, Path], origin: Origin, path: str
) -> None:
    proxy, _ = small_limit
    size = 12 * MiB
    origin.script(path, {"headers": [FRESH], "body_size": size, "delay_s": 0.5})
    request = f"GET {path} HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n".encode()
    leader = socket.create_connection(("127.0.0.1", proxy.port), timeout=10)
    try:
        leader.sendall(request)
        origin.wait_for_count(path, 1)
        with ThreadPoolExecutor(max_workers=3) as pool:
            futures = [pool.submit(get_raw, proxy, path) for _ in range(3)]
            leader.recv(1024)  # the leader's answer has begun: now it goes away
            leader.close()
            raws = [f.result() for f in futures]
    finally:
        leader.close()
    for raw in raws:
        head, body = body_of(raw)
        assert head.startswith(b"HTTP/1.1 200")
        assert body == b"x" * size
    assert origin.count(path) == 1


def test_a_chunked_body_spilled_while_shared_is_still_stored_when_it_fits(
    proxy: Proxy, origin: Origin, path: str
) -> None:
    # 12 MiB of unknown length: past the size at which a shared fill goes to a file, within
    # the default object limit (64 MiB), so it is read back and stored once complete.
    size = 12 * MiB
    origin.script(
        path, {"headers": [FRESH], "body_size": size, "framing": "chunked", "delay_s": 0.5}
    )
    for raw in concurrent_gets(proxy, path, 3):
        head, body = body_of(raw)
        assert head.startswith(b"HTTP/1.1 200")
        assert body == b"x" * size
    assert origin.count(path) == 1
    hit = proxy.get(path, headers={"Host": "a.test"})  # the host the clients above named
    assert hit.header("X-Cache-Status") == "HIT"
    assert hit.body == b"x" * size
    assert origin.count(path) == 1


@pytest.mark.parametrize("framing", ["length", "chunked"])
def test_every_client_of_a_spilled_fill_is_recorded_with_its_attribution(
    origin: Origin, proxy_factory: ProxyFactory, path: str, framing: str
) -> None:
    size = 12 * MiB
    content_id = "sha256:" + hashlib.sha256(b"x" * size).hexdigest()
    claim = [
        ["X-Content-Id", content_id],
        ["X-Creator-Id", "alice"],
        ["X-Manifest-Id", "sha256:" + "ab" * 32],
    ]
    origin.script(
        path,
        {"headers": [FRESH, *claim], "body_size": size, "framing": framing, "delay_s": 0.5},
    )
    proxy = proxy_factory(origin.url, "--max-object-size", "4MiB", "--origin-trusted")
    raws = concurrent_gets(proxy, path, 3)
    assert origin.count(path) == 1
    for raw in raws:
        head, body = body_of(raw)
        assert len(body) == size
        request_id = re.search(rb"\r\nX-Request-ID: (\S+)", head, re.IGNORECASE)
        assert request_id is not None
        receipt = proxy.admin(f"/_cachet/receipts/{request_id.group(1).decode()}")
        record = json.loads(receipt.body)["record"]
        assert (record["content_id"], record["creator"], record["bytes"]) == (
            content_id,
            "alice",
            size,
        )
