"""proxy.purge's pure parts: the JSON body, the bearer token (RFC 6750 §2.1), prefix matching."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.purge import (
    MAX_PURGE_TARGETS,
    PurgeFormatError,
    check_token,
    keys_with_prefixes,
    parse_purge_request,
    token_id,
)


def test_urls_are_normalised_like_cache_keys_rfc9111_s2() -> None:
    request = parse_purge_request(
        b'{"urls": ["http://Example.COM:80/a?b=1"], "prefixes": ["http://example.com"]}'
    )
    assert request.urls == ("http://example.com/a?b=1",)
    assert request.prefixes == ("http://example.com",)
    assert request.mode == "hard"
    assert request.kinds() == ["urls", "prefixes"]


def test_soft_mode_and_surrogate_keys() -> None:
    request = parse_purge_request(b'{"surrogate_keys": ["t"], "mode": "soft"}')
    assert (request.mode, request.surrogate_keys) == ("soft", ("t",))


def test_too_many_targets_are_refused() -> None:
    urls = [f"http://x/{i}" for i in range(MAX_PURGE_TARGETS + 1)]
    with pytest.raises(PurgeFormatError, match="too many"):
        parse_purge_request(('{"urls": ' + str(urls).replace("'", '"') + "}").encode())


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200))
def test_any_body_parses_or_raises_purge_format_error_only(body: bytes) -> None:
    try:
        parse_purge_request(body)
    except PurgeFormatError:
        pass


@settings(max_examples=100, deadline=None)
@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=20),
        lambda inner: (
            st.lists(inner, max_size=4)
            | st.dictionaries(
                st.sampled_from(["urls", "prefixes", "surrogate_keys", "content_ids", "mode", "x"]),
                inner,
                max_size=4,
            )
        ),
        max_leaves=10,
    )
)
def test_any_json_parses_or_raises_purge_format_error_only(document: object) -> None:
    try:
        parse_purge_request(json.dumps(document).encode())
    except PurgeFormatError:
        pass


def test_bearer_token_checks() -> None:
    assert check_token("Bearer abc", "abc")
    assert check_token("bearer  abc ", "abc")
    assert not check_token(None, "abc")
    assert not check_token("Bearer abd", "abc")
    assert not check_token("Basic abc", "abc")
    assert not check_token("Bearer", "abc")
    assert token_id("abc") != "abc" and len(token_id("abc")) == 12


@settings(max_examples=60, deadline=None)
@given(
    st.sets(st.text(alphabet="ab/", max_size=5), max_size=20),
    st.lists(st.text(alphabet="ab/", max_size=3), max_size=4),
)
def test_prefix_matching_equals_the_obvious_scan(keys: set[str], prefixes: list[str]) -> None:
    expected = {k for k in keys if any(k.startswith(p) for p in prefixes)}
    assert keys_with_prefixes(keys, prefixes) == expected
