"""Request directives, heuristic freshness and invalidation through a real `cachet proxy`
(RFC 9111 §4.2, §4.4, §5.2.1)."""

from __future__ import annotations

import email.utils
import time

from tests.integration.conftest import Origin, Proxy

FRESH = ["Cache-Control", "max-age=300"]
STALE = [["Cache-Control", "max-age=1"], ["Age", "100"], ["ETag", '"s"']]


def test_max_stale_accepts_stale_rfc9111_s5_2_1_2(proxy: Proxy, origin: Origin, path: str) -> None:
    origin.script(path, {"headers": STALE, "body": "old"})
    proxy.get(path)
    response = proxy.get(path, headers={"Cache-Control": "max-stale=1000"})
    assert response.body == b"old"
    assert response.header("X-Cache-Status") == "STALE"
    assert origin.count(path) == 1


def test_min_fresh_refuses_nearly_stale_rfc9111_s5_2_1_3(
    proxy: Proxy, origin: Origin, path: str
) -> None:
    origin.script(path, {"headers": [FRESH], "body": "x"})
    proxy.get(path)
    assert (
        proxy.get(path, headers={"Cache-Control": "min-fresh=400"}).header("X-Cache-Status")
        != "HIT"
    )
    assert origin.count(path) == 2


def test_pragma_no_cache_request_goes_forward_rfc9111_s5_4(
    proxy: Proxy, origin: Origin, path: str
) -> None:
    origin.script(path, {"headers": [FRESH], "body": "x"})
    proxy.get(path)
    proxy.get(path, headers={"Pragma": "no-cache"})
    assert origin.count(path) == 2


def test_heuristic_freshness_from_last_modified_rfc9111_s4_2_2(
    proxy: Proxy, origin: Origin, path: str
) -> None:
    last_modified = email.utils.formatdate(time.time() - 10 * 86400, usegmt=True)
    origin.script(path, {"headers": [["Last-Modified", last_modified]], "body": "h"})
    proxy.get(path)
    assert proxy.get(path).header("X-Cache-Status") == "HIT"
    assert origin.count(path) == 1


def test_expires_in_the_past_is_stale_rfc9111_s5_3(proxy: Proxy, origin: Origin, path: str) -> None:
    origin.script(path, {"headers": [["Expires", "Thu, 01 Jan 1970 00:00:00 GMT"]], "body": "e"})
    proxy.get(path)
    assert proxy.get(path).header("X-Cache-Status") != "HIT"
    assert origin.count(path) == 2


def test_invalid_expires_is_stale_rfc9111_s5_3(proxy: Proxy, origin: Origin, path: str) -> None:
    origin.script(path, {"headers": [["Expires", "0"]], "body": "e"})
    proxy.get(path)
    assert proxy.get(path).header("X-Cache-Status") != "HIT"
    assert origin.count(path) == 2


def test_unsafe_method_invalidates_every_variant_rfc9111_s4_4(
    proxy: Proxy, origin: Origin, path: str
) -> None:
    vary = ["Vary", "Accept-Language"]
    origin.script(
        path,
        {"headers": [FRESH, vary], "body": "en"},
        {"headers": [FRESH, vary], "body": "fr"},
        {"status": 200, "body": "deleted"},
        {"headers": [FRESH, vary], "body": "new"},
    )
    proxy.get(path, headers={"Accept-Language": "en"})
    proxy.get(path, headers={"Accept-Language": "fr"})
    assert proxy.request("DELETE", path).status == 200
    for language in ("en", "fr"):
        response = proxy.get(path, headers={"Accept-Language": language})
        assert response.header("X-Cache-Status") != "HIT"
    assert origin.count(path) == 5


def test_location_of_same_origin_is_invalidated_rfc9111_s4_4(
    proxy: Proxy, origin: Origin, path: str
) -> None:
    origin.script(path, {"headers": [FRESH], "body": "listed"})
    origin.script(
        f"{path}/new",
        {"status": 201, "reason": "Created", "headers": [["Location", path]]},
    )
    proxy.get(path, headers={"Host": "loc.test"})
    proxy.request(
        "POST", f"{path}/new", headers={"Host": "loc.test", "Content-Length": "1"}, body=b"n"
    )
    again = proxy.get(path, headers={"Host": "loc.test"})
    assert again.header("X-Cache-Status") != "HIT"
    assert origin.count(path) == 2


def test_error_response_to_unsafe_method_does_not_invalidate_rfc9111_s4_4(
    proxy: Proxy, origin: Origin, path: str
) -> None:
    origin.script(
        path,
        {"headers": [FRESH], "body": "kept"},
        {"status": 500, "reason": "Internal Server Error", "body": "no"},
    )
    proxy.get(path)
    assert proxy.request("POST", path, headers={"Content-Length": "1"}, body=b"p").status == 500
    after = proxy.get(path)
    assert after.header("X-Cache-Status") == "HIT"
    assert after.body == b"kept"
