"""A 200 to a HEAD updates the stored GET response (RFC 9111 §4.3.5): the cache-tests suite's
head-200-freshness-update / head-200-update, through a real `cachet proxy`."""

from __future__ import annotations

import time

from tests.integration.conftest import Origin, Proxy

STALE = {
    "headers": [
        ["Cache-Control", "max-age=1"],
        ["ETag", '"v1"'],
        ["Template-A", "1"],
        ["Template-B", "kept"],
    ],
    "body": "stored body",
}


def become_stale(proxy: Proxy, path: str) -> None:
    assert proxy.get(path).body == b"stored body"
    time.sleep(1.5)


def test_a_head_200_with_the_same_validator_freshens_the_stored_get_rfc9111_s4_3_5(
    proxy: Proxy, origin: Origin, path: str
) -> None:
    origin.script(
        path,
        STALE,
        {
            "headers": [["Cache-Control", "max-age=1000"], ["ETag", '"v1"'], ["Template-A", "2"]],
            "body": "stored body",
        },
    )
    become_stale(proxy, path)
    head = proxy.request("HEAD", path)
    assert head.status == 200
    assert origin.requests(path)[1]["method"] == "HEAD"
    # Answered from the updated entry (§3.2): the HEAD's fields replace the stored ones, the
    # stored ones it did not send are kept, and the length is the stored body's.
    assert head.header("Template-A") == "2"
    assert head.header("Template-B") == "kept"
    assert head.header("Content-Length") == str(len(b"stored body"))
    assert head.body == b""
    hit = proxy.get(path)
    assert (hit.status, hit.body) == (200, b"stored body")
    assert hit.header("X-Cache-Status") == "HIT"  # fresh again, from the HEAD's max-age
    assert hit.header("Template-A") == "2"  # §3.2: the HEAD's fields replace the stored ones
    assert origin.count(path) == 2


def test_a_head_200_with_another_validator_leaves_the_stored_get_stale_rfc9111_s4_3_5(
    proxy: Proxy, origin: Origin, path: str
) -> None:
    origin.script(
        path,
        STALE,
        {"headers": [["Cache-Control", "max-age=1000"], ["ETag", '"v2"']], "body": "new body"},
        {"headers": [["Cache-Control", "max-age=1000"], ["ETag", '"v2"']], "body": "new body"},
    )
    become_stale(proxy, path)
    assert proxy.request("HEAD", path).status == 200
    after = proxy.get(path)
    assert (after.status, after.body) == (200, b"new body")  # not the stale copy, freshened
    assert origin.count(path) == 3
