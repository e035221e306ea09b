"""Variants of one URL in the memory tier (proxy/cache/store.py), RFC 9111 §4.1, §4.3.4."""

from __future__ import annotations

from proxy.cache.entry import StoredResponse
from proxy.cache.store import MAX_VARIANTS, ResponseStore
from tests.unit.cache_builders import T0, stored_response

KEY = "http://example.com/page"
VARY_AE = [("Cache-Control", "max-age=60"), ("Vary", "Accept-Encoding")]


def variant(encoding: str | None, body: bytes = b"x", at: float = T0) -> StoredResponse:
    request = [("Accept-Encoding", encoding)] if encoding is not None else []
    return stored_response(
        VARY_AE, body=body, request_headers=request, request_time=at, response_time=at, date=at
    )


def new_store() -> ResponseStore:
    return ResponseStore(capacity_bytes=1 << 24, max_object_bytes=1 << 22)


def test_uri_miss_when_nothing_stored_rfc9111_s4() -> None:
    assert new_store().select(KEY, []) == (None, False)


def test_response_without_vary_matches_any_request_rfc9111_s4_1() -> None:
    store = new_store()
    plain = stored_response([("Cache-Control", "max-age=60")])
    store.put(KEY, plain)
    assert store.select(KEY, [("Accept-Encoding", "br")]) == (plain, True)


def test_several_variants_of_one_url_rfc9111_s4_1() -> None:
    store = new_store()
    gzip, br, none = variant("gzip", b"g"), variant("br", b"b"), variant(None, b"n")
    for stored in (gzip, br, none):
        store.put(KEY, stored)
    assert store.select(KEY, [("Accept-Encoding", "gzip")]) == (gzip, True)
    assert store.select(KEY, [("accept-encoding", "br")]) == (br, True)
    assert store.select(KEY, []) == (none, True)
    assert len(store.variants(KEY) or ()) == 3


def test_vary_miss_when_no_variant_matches_rfc9111_s4_1() -> None:
    store = new_store()
    store.put(KEY, variant("gzip"))
    assert store.select(KEY, [("Accept-Encoding", "zstd")]) == (None, True)


def test_whitespace_insignificant_when_selecting_rfc9111_s4_1() -> None:
    store = new_store()
    stored = variant("gzip, br")
    store.put(KEY, stored)
    assert store.select(KEY, [("Accept-Encoding", "gzip,br")]) == (stored, True)


def test_newer_response_replaces_same_variant_rfc9111_s4_1() -> None:
    """The most recent response with the same secondary key is the one used."""
    store = new_store()
    old, new = variant("gzip", b"old", at=T0), variant("gzip", b"new", at=T0 + 10)
    store.put(KEY, old)
    store.put(KEY, new)
    assert store.select(KEY, [("Accept-Encoding", "gzip")]) == (new, True)
    assert store.variants(KEY) == (new,)


def test_newest_matching_variant_wins_rfc9111_s4_1() -> None:
    """§4.1: when several stored responses match, the most recent is used."""
    store = new_store()
    with_vary = variant("gzip", b"varied", at=T0)
    no_vary = stored_response([("Cache-Control", "max-age=60")], body=b"plain", date=T0 + 5)
    store.put(KEY, with_vary)
    store.put(KEY, no_vary)
    assert store.select(KEY, [("Accept-Encoding", "gzip")]) == (no_vary, True)


def test_variants_per_url_are_bounded() -> None:
    store = new_store()
    made = [variant(f"enc-{i}", at=T0 + i) for i in range(MAX_VARIANTS + 5)]
    for stored in made:
        store.put(KEY, stored)
    kept = store.variants(KEY) or ()
    assert len(kept) == MAX_VARIANTS
    assert kept[0] is made[-1]  # the newest are kept
    assert store.select(KEY, [("Accept-Encoding", "enc-0")]) == (None, True)
    assert store.bytes_used == sum(v.size_bytes for v in kept)


def test_replace_swaps_only_the_refreshed_variant_rfc9111_s4_3_4() -> None:
    store = new_store()
    gzip, br = variant("gzip"), variant("br")
    store.put(KEY, gzip)
    store.put(KEY, br)
    refreshed = variant("gzip", b"refreshed", at=T0 + 100)
    store.replace(KEY, gzip, refreshed)
    assert store.select(KEY, [("Accept-Encoding", "gzip")]) == (refreshed, True)
    assert store.select(KEY, [("Accept-Encoding", "br")]) == (br, True)


def test_replace_after_eviction_is_a_no_op() -> None:
    store = new_store()
    store.replace(KEY, variant("gzip"), variant("gzip"))
    assert store.variants(KEY) is None


def test_invalidate_drops_every_variant_rfc9111_s4_4() -> None:
    store = new_store()
    store.put(KEY, variant("gzip"))
    store.put(KEY, variant("br"))
    assert store.invalidate(KEY)
    assert store.select(KEY, [("Accept-Encoding", "gzip")]) == (None, False)
    assert not store.invalidate(KEY)
    assert len(store) == 0
