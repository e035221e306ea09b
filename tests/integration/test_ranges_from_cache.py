"""Range requests answered from a cached full response through a real `cachet proxy`
(RFC 9110 §14, §13.1.5, §15.3.7, §15.5.17; RFC 9111 §3.3)."""

from __future__ import annotations

import hashlib
import json
import re
import time
from concurrent.futures import ThreadPoolExecutor

from tests.integration.conftest import Origin, Proxy, ProxyFactory

FRESH = ["Cache-Control", "max-age=300"]
BODY = "0123456789abcdefghij"  # 20 bytes
ETAG = '"v1"'


def _fill(proxy: Proxy, origin: Origin, path: str) -> None:
    origin.script(
        path, {"headers": [FRESH, ["ETag", ETAG], ["Content-Type", "text/plain"]], "body": BODY}
    )
    assert proxy.get(path).status == 200


def test_single_range_from_cache_is_206_with_content_range_rfc9110_s14_4(
    proxy: Proxy, origin: Origin, path: str
) -> None:
    _fill(proxy, origin, path)
    response = proxy.get(path, headers={"Range": "bytes=2-5"})
    assert response.status == 206
    assert response.body == b"2345"
    assert response.header("Content-Range") == "bytes 2-5/20"
    assert response.header("Content-Length") == "4"
    assert response.header("X-Cache-Status") == "HIT"
    assert response.header("ETag") == ETAG
    assert origin.count(path) == 1


def test_suffix_and_open_ranges_rfc9110_s14_1_2(proxy: Proxy, origin: Origin, path: str) -> None:
    _fill(proxy, origin, path)
    assert proxy.get(path, headers={"Range": "bytes=-3"}).body == b"hij"
    tail = proxy.get(path, headers={"Range": "bytes=15-"})
    assert (tail.status, tail.body, tail.header("Content-Range")) == (
        206,
        b"fghij",
        "bytes 15-19/20",
    )


def test_multiple_ranges_are_multipart_byteranges_rfc9110_s14_6(
    proxy: Proxy, origin: Origin, path: str
) -> None:
    _fill(proxy, origin, path)
    response = proxy.get(path, headers={"Range": "bytes=0-1,10-11"})
    assert response.status == 206
    content_type = response.header("Content-Type") or ""
    found = re.fullmatch(r'multipart/byteranges; boundary="?([^"]+)"?', content_type)
    assert found is not None, content_type
    boundary = found.group(1)
    assert response.header("Content-Length") == str(len(response.body))
    parts = response.body.split(b"--" + boundary.encode())
    assert parts[-1] == b"--\r\n"
    assert b"Content-Range: bytes 0-1/20\r\n\r\n01\r\n" in parts[1]
    assert b"Content-Type: text/plain\r\n" in parts[1]
    assert b"Content-Range: bytes 10-11/20\r\n\r\nab\r\n" in parts[2]
    other = proxy.get(path, headers={"Range": "bytes=0-1,10-11"}).header("Content-Type")
    assert other != content_type  # a fresh random boundary per response


def test_unsatisfiable_range_is_416_with_star_content_range_rfc9110_s15_5_17(
    proxy: Proxy, origin: Origin, path: str
) -> None:
    _fill(proxy, origin, path)
    response = proxy.get(path, headers={"Range": "bytes=50-60"})
    assert response.status == 416
    assert response.header("Content-Range") == "bytes */20"
    assert response.body == b""


def test_if_range_match_honours_range_and_mismatch_sends_whole_rfc9110_s13_1_5(
    proxy: Proxy, origin: Origin, path: str
) -> None:
    _fill(proxy, origin, path)
    matched = proxy.get(path, headers={"Range": "bytes=0-1", "If-Range": ETAG})
    assert (matched.status, matched.body) == (206, b"01")
    stale = proxy.get(path, headers={"Range": "bytes=0-1", "If-Range": '"v0"'})
    assert (stale.status, stale.body) == (200, BODY.encode())
    weak = proxy.get(path, headers={"Range": "bytes=0-1", "If-Range": 'W/"v1"'})
    assert weak.status == 200  # a weak tag never matches (§13.1.5)


def test_range_on_head_is_ignored_rfc9110_s14_2(proxy: Proxy, origin: Origin, path: str) -> None:
    _fill(proxy, origin, path)
    response = proxy.request("HEAD", path, headers={"Range": "bytes=0-1"})
    assert response.status == 200
    assert response.header("Content-Length") == "20"


def test_invalid_or_abusive_ranges_are_ignored_rfc9110_s14_2(
    proxy: Proxy, origin: Origin, path: str
) -> None:
    _fill(proxy, origin, path)
    for value in ("bytes=5-2", "items=0-1", "bytes=abc", "bytes=" + ",".join(["0-0"] * 200)):
        response = proxy.get(path, headers={"Range": value})
        assert (response.status, response.body) == (200, BODY.encode()), value
    overlapping = proxy.get(path, headers={"Range": "bytes=0-,0-,0-"})
    assert (overlapping.status, overlapping.body) == (206, BODY.encode())  # coalesced, once


def test_range_on_a_miss_fills_the_cache_and_serves_the_range_rfc9110_s14_2(
    proxy: Proxy, origin: Origin, path: str
) -> None:
    origin.script(path, {"headers": [FRESH], "body": BODY})
    response = proxy.get(path, headers={"Range": "bytes=0-3"})
    assert (response.status, response.body) == (206, b"0123")
    assert response.header("Content-Range") == "bytes 0-3/20"
    sent = origin.requests(path)
    assert len(sent) == 1
    assert all(name.lower() != "range" for name, _ in sent[0]["headers"])
    whole = proxy.get(path)
    assert (whole.status, whole.body, whole.header("X-Cache-Status")) == (
        200,
        BODY.encode(),
        "HIT",
    )
    assert origin.count(path) == 1


def test_range_on_a_miss_above_the_fill_size_goes_to_the_origin_rfc9111_s3_3(
    proxy_factory: ProxyFactory, origin: Origin, path: str
) -> None:
    proxy = proxy_factory(origin.url, "--range-fill-max-size", "10")
    origin.script(
        path,
        {"headers": [FRESH], "body": BODY},
        {
            "status": 206,
            "reason": "Partial Content",
            "headers": [FRESH, ["Content-Range", "bytes 0-3/20"]],
            "body": "0123",
        },
    )
    response = proxy.get(path, headers={"Range": "bytes=0-3"})
    assert (response.status, response.body) == (206, b"0123")
    sent = origin.requests(path)
    assert len(sent) == 2
    assert any(name.lower() == "range" for name, _ in sent[1]["headers"])
    # The 206 was not stored as the whole response.
    origin.script(path, {"headers": [FRESH], "body": BODY})
    assert proxy.get(path).body == BODY.encode()


def test_range_hit_record_counts_bytes_sent(proxy: Proxy, origin: Origin, path: str) -> None:
    _fill(proxy, origin, path)
    response = proxy.get(path, headers={"Range": "bytes=0-3"})
    request_id = response.header("X-Request-ID")
    receipt = proxy.admin(f"/_cachet/receipts/{request_id}")
    assert receipt.status == 200
    record = json.loads(receipt.body)["record"]
    assert (record["bytes"], record["status"], record["cache"]) == (4, 206, "hit")


def test_concurrent_range_misses_collapse_onto_one_whole_fetch_rfc9110_s14_2(
    proxy: Proxy, origin: Origin, path: str
) -> None:
    origin.script(path, {"headers": [FRESH], "body": BODY, "delay_s": 0.5})
    ranges = [None, "bytes=0-1", "bytes=5-6", "bytes=0-0,19-19", "bytes=99-"]
    with ThreadPoolExecutor(max_workers=len(ranges)) as pool:
        answers = list(
            pool.map(lambda r: proxy.get(path, headers={"Range": r} if r else None), ranges)
        )
    assert origin.count(path) == 1
    assert (answers[0].status, answers[0].body) == (200, BODY.encode())
    assert (answers[1].status, answers[1].body) == (206, b"01")
    assert (answers[2].status, answers[2].body) == (206, b"56")
    assert answers[3].status == 206
    assert (answers[3].header("Content-Type") or "").startswith("multipart/byteranges")
    assert (answers[4].status, answers[4].header("Content-Range")) == (416, "bytes */20")


def test_range_served_while_revalidating_refreshes_the_whole_object_rfc5861_s3(
    proxy_factory: ProxyFactory, origin: Origin, path: str
) -> None:
    proxy = proxy_factory(origin.url, "--range-fill-max-size", "10")
    stale_at_once = [["Cache-Control", "max-age=10, stale-while-revalidate=600"], ["Age", "20"]]
    newer = BODY.upper()
    origin.script(
        path, {"headers": stale_at_once, "body": BODY}, {"headers": [FRESH], "body": newer}
    )
    proxy.get(path)
    response = proxy.get(path, headers={"Range": "bytes=0-1"})
    assert (response.status, response.body) == (206, b"01")
    assert response.header("X-Cache-Status") == "UPDATING"
    origin.wait_for_count(path, 2)
    refresh = origin.requests(path)[1]
    assert all(name.lower() not in ("range", "if-range") for name, _ in refresh["headers"])
    deadline = time.monotonic() + 10
    while proxy.get(path).body != newer.encode():  # the refresh lands in the cache
        assert time.monotonic() < deadline, "the background refresh never stored the object"
    assert origin.count(path) == 2


def test_range_of_attributed_content_carries_x_provenance(
    proxy_factory: ProxyFactory, origin: Origin, path: str
) -> None:
    proxy = proxy_factory(origin.url, "--origin-trusted")
    content_id = "sha256:" + hashlib.sha256(BODY.encode()).hexdigest()
    claim = [
        ["X-Content-Id", content_id],
        ["X-Creator-Id", "alice"],
        ["X-Manifest-Id", "sha256:" + "cd" * 32],
    ]
    origin.script(path, {"headers": [FRESH, *claim], "body": BODY})
    proxy.get(path)
    whole = proxy.get(path)  # X-Provenance comes with verified cached responses
    expected = whole.header("X-Provenance")
    assert expected is not None and content_id in expected
    part = proxy.get(path, headers={"Range": "bytes=0-1"})
    assert part.status == 206
    assert part.header("X-Provenance") == expected
