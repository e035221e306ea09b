"""Cache-Status rendering (proxy/http/cache_status.py), RFC 9211 with RFC 8941 syntax."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.http import cache_status as outcomes
from proxy.http.cache_status import Outcome, cache_status

# RFC 8941 §3.3.4 sf-token and §3.3.3 sf-string.
SF_TOKEN = re.compile(r"[A-Za-z*][!#$%&'*+\-.^_`|~0-9A-Za-z:/]*")
SF_STRING = re.compile(r'"(?:[\x20\x21\x23-\x5b\x5d-\x7e]|\\["\\])*"')


def test_hit_with_ttl_rfc9211_s2_1_s2_4() -> None:
    assert cache_status("cachet", outcomes.HIT, ttl_s=12.7) == "cachet; hit; ttl=12"


def test_stale_ttl_is_negative_rfc9211_s2_4() -> None:
    """A stale response never reports a non-negative ttl."""
    assert "ttl=-1" in cache_status("cachet", outcomes.EXPIRED, ttl_s=-0.5)
    assert "ttl=-30" in cache_status("cachet", outcomes.EXPIRED, ttl_s=-30.0)


def test_uri_miss_stored_rfc9211_s2_2_s2_5() -> None:
    text = cache_status("cachet", outcomes.URI_MISS, stored=True)
    assert text == "cachet; fwd=uri-miss; stored"


def test_revalidated_carries_fwd_status_rfc9211_s2_3() -> None:
    text = cache_status("cachet", outcomes.REVALIDATED, fwd_status=304)
    assert text == "cachet; fwd=stale; fwd-status=304"


def test_vary_miss_and_method_and_bypass_rfc9211_s2_2() -> None:
    assert cache_status("cachet", outcomes.VARY_MISS) == "cachet; fwd=vary-miss"
    assert cache_status("cachet", outcomes.METHOD) == "cachet; fwd=method"
    assert cache_status("cachet", outcomes.BYPASS) == "cachet; fwd=bypass"
    assert cache_status("cachet", outcomes.REQUEST_MISS) == "cachet; fwd=request"


def test_collapsed_rfc9211_s2_6() -> None:
    text = cache_status("cachet", outcomes.URI_MISS, collapsed=True)
    assert text == "cachet; fwd=uri-miss; collapsed"


def test_hit_and_fwd_are_exclusive_in_outcomes_rfc9211_s2_1() -> None:
    """`hit` means the request was not forwarded; a forwarded outcome never says hit."""
    every = [v for v in vars(outcomes).values() if isinstance(v, Outcome)]
    assert every
    for outcome in every:
        assert not (outcome.hit and outcome.fwd is not None), outcome


def test_stale_served_after_error_has_detail_rfc9211_s2_8() -> None:
    text = cache_status("cachet", outcomes.STALE_IF_ERROR, fwd_status=503)
    assert text == "cachet; fwd=stale; fwd-status=503; detail=stale-if-error"


def test_updating_is_a_hit_rfc9211_s2_1() -> None:
    text = cache_status("cachet", outcomes.UPDATING, ttl_s=-3.0)
    assert text == "cachet; hit; ttl=-3; detail=stale-while-revalidate"


def test_detail_token_unquoted_rfc9211_s2_8() -> None:
    assert cache_status("cachet", outcomes.BYPASS, detail="origin-timeout").endswith(
        "; detail=origin-timeout"
    )


@pytest.mark.parametrize(
    ("detail", "rendered"),
    [
        ("origin timed out", '"origin timed out"'),
        ('say "hi"', '"say \\"hi\\""'),
        ("back\\slash", '"back\\\\slash"'),
        ("1xx", '"1xx"'),
    ],
)
def test_detail_quoted_when_not_a_token_rfc9211_s2_8_rfc8941_s3_3_3(
    detail: str, rendered: str
) -> None:
    assert cache_status("cachet", outcomes.BYPASS, detail=detail).endswith(f"; detail={rendered}")


def test_explicit_detail_overrides_outcome_detail_rfc9211_s2_8() -> None:
    text = cache_status("cachet", outcomes.STALE_IF_ERROR, detail="connect-refused")
    assert text.endswith("; detail=connect-refused")
    assert "stale-if-error" not in text


@settings(max_examples=200, deadline=None)
@given(st.text(min_size=1, max_size=20))
def test_detail_always_valid_structured_field_rfc8941_s3_3(detail: str) -> None:
    """Whatever the detail text, the member stays a valid RFC 8941 parameter value."""
    text = cache_status("cachet", outcomes.BYPASS, detail=detail)
    value = text.split("; detail=", 1)[1]
    assert SF_TOKEN.fullmatch(value) or SF_STRING.fullmatch(value), value
