"""May a stored response answer this request? (proxy/cache/reuse.py), RFC 9111 §4, §4.2.4, §5.2,
§5.4; RFC 5861 (stale-while-revalidate, stale-if-error); RFC 8246 (immutable)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.cache.entry import StoredResponse
from proxy.cache.reuse import Verdict, decide_reuse, may_serve_stale_on_error
from proxy.http.cache_control import MAX_DELTA_SECONDS, parse_cache_control
from tests.unit.cache_builders import T0, stored_response

NONE = parse_cache_control([])


def stored(cache_control: str) -> StoredResponse:
    """Stored at T0 with Date T0 and no upstream Age: its age at T0 + n is n."""
    return stored_response([("Cache-Control", cache_control)])


def verdict(
    response_cc: str, at_age_s: float, request_cc: str | None = None, pragma: bool = False
) -> Verdict:
    request = parse_cache_control([request_cc] if request_cc is not None else [])
    return decide_reuse(stored(response_cc), request, pragma, T0 + at_age_s)


# ---- §4.2 fresh vs stale for a plain request ----


def test_fresh_while_age_below_lifetime_rfc9111_s4_2() -> None:
    assert verdict("max-age=60", 59) is Verdict.FRESH


@pytest.mark.parametrize("age_s", [60, 61, 10_000])
def test_stale_at_or_after_lifetime_needs_validation_rfc9111_s4_2(age_s: int) -> None:
    assert verdict("max-age=60", age_s) is Verdict.REVALIDATE


def test_soft_purged_entry_is_not_fresh_rfc9111_s4_2() -> None:
    entry = stored("max-age=600")
    entry.stale_marked = True
    assert decide_reuse(entry, NONE, False, T0 + 1) is Verdict.REVALIDATE


@settings(max_examples=200, deadline=None)
@given(
    max_age_s=st.integers(min_value=0, max_value=MAX_DELTA_SECONDS),
    elapsed_quarters=st.integers(min_value=0, max_value=4 * (MAX_DELTA_SECONDS + 10)),
)
def test_fresh_iff_age_below_lifetime_rfc9111_s4_2(max_age_s: int, elapsed_quarters: int) -> None:
    """§4.2: "a response is fresh if its age has not yet exceeded its freshness lifetime" — for
    a plain request, FRESH exactly when age < lifetime, otherwise validation is needed."""
    elapsed_s = elapsed_quarters / 4  # exact in binary floating point
    entry = stored(f"max-age={max_age_s}")
    result = decide_reuse(entry, NONE, False, T0 + elapsed_s)
    assert (result is Verdict.FRESH) == (elapsed_s < max_age_s)
    if result is not Verdict.FRESH:
        assert result is Verdict.REVALIDATE


# ---- §5.2.2 response directives ----


def test_response_no_cache_always_revalidates_rfc9111_s5_2_2_4() -> None:
    assert verdict("no-cache, max-age=600", 1) is Verdict.REVALIDATE


def test_qualified_response_no_cache_allows_reuse_rfc9111_s5_2_2_4() -> None:
    assert verdict('no-cache="X-Secret", max-age=600', 1) is Verdict.FRESH


@pytest.mark.parametrize(
    "response_cc",
    [
        "max-age=60, must-revalidate",
        "max-age=60, proxy-revalidate",
        "max-age=60, no-cache",
        "s-maxage=60",
    ],
)
def test_must_revalidate_family_blocks_max_stale_rfc9111_s4_2_4(response_cc: str) -> None:
    """§4.2.4: no stale reuse against must-revalidate, proxy-revalidate, no-cache or s-maxage
    (which implies proxy-revalidate, §5.2.2.10), even when the client accepts staleness."""
    assert verdict(response_cc, 70, "max-stale") is Verdict.REVALIDATE
    assert verdict(response_cc, 70, "max-stale=600") is Verdict.REVALIDATE


@pytest.mark.parametrize(
    "response_cc",
    [
        "max-age=60, stale-while-revalidate=600, must-revalidate",
        "max-age=60, stale-while-revalidate=600, proxy-revalidate",
    ],
)
def test_must_revalidate_blocks_stale_while_revalidate_rfc9111_s4_2_4(response_cc: str) -> None:
    assert verdict(response_cc, 70) is Verdict.REVALIDATE


# ---- §5.2.1 request directives ----


def test_request_no_cache_revalidates_fresh_entry_rfc9111_s5_2_1_4() -> None:
    assert verdict("max-age=600", 1, "no-cache") is Verdict.REVALIDATE


def test_pragma_no_cache_without_cache_control_rfc9111_s5_4() -> None:
    assert verdict("max-age=600", 1, None, pragma=True) is Verdict.REVALIDATE


def test_pragma_ignored_when_cache_control_present_rfc9111_s5_4() -> None:
    assert verdict("max-age=600", 1, "max-age=3600", pragma=True) is Verdict.FRESH


def test_request_max_age_limits_age_rfc9111_s5_2_1_1() -> None:
    assert verdict("max-age=600", 10, "max-age=10") is Verdict.FRESH
    assert verdict("max-age=600", 11, "max-age=10") is Verdict.REVALIDATE


def test_request_max_age_zero_revalidates_rfc9111_s5_2_1_1() -> None:
    assert verdict("max-age=600", 1, "max-age=0") is Verdict.REVALIDATE


def test_invalid_request_max_age_is_ignored_rfc9111_s5_2_1_1() -> None:
    assert verdict("max-age=600", 100, "max-age=soon") is Verdict.FRESH


def test_max_stale_without_value_accepts_any_staleness_rfc9111_s5_2_1_2() -> None:
    assert verdict("max-age=60", 1_000_000, "max-stale") is Verdict.STALE_ACCEPTED


def test_max_stale_with_value_bounds_staleness_rfc9111_s5_2_1_2() -> None:
    assert verdict("max-age=60", 90, "max-stale=30") is Verdict.STALE_ACCEPTED
    assert verdict("max-age=60", 91, "max-stale=30") is Verdict.REVALIDATE


def test_max_stale_does_not_change_fresh_verdict_rfc9111_s5_2_1_2() -> None:
    assert verdict("max-age=60", 10, "max-stale=30") is Verdict.FRESH


def test_min_fresh_requires_remaining_lifetime_rfc9111_s5_2_1_3() -> None:
    assert verdict("max-age=600", 100, "min-fresh=500") is Verdict.FRESH
    assert verdict("max-age=600", 101, "min-fresh=500") is Verdict.REVALIDATE


# ---- RFC 8246 immutable ----


def test_immutable_fresh_answers_reload_rfc8246_s2() -> None:
    """A reload (max-age=0) of a fresh immutable response needn't go to the origin."""
    assert verdict("max-age=600, immutable", 100, "max-age=0") is Verdict.FRESH


def test_immutable_stale_still_revalidates_rfc8246_s2() -> None:
    assert verdict("max-age=600, immutable", 600, "max-age=0") is Verdict.REVALIDATE


def test_immutable_does_not_override_request_no_cache_rfc8246_s2() -> None:
    """A force reload (no-cache) is explicitly overridden by the user."""
    assert verdict("max-age=600, immutable", 100, "no-cache") is Verdict.REVALIDATE


# ---- RFC 5861 stale-while-revalidate ----


def test_stale_while_revalidate_window_rfc5861_s3() -> None:
    cc = "max-age=60, stale-while-revalidate=30"
    assert verdict(cc, 59) is Verdict.FRESH
    assert verdict(cc, 60) is Verdict.STALE_WHILE_REVALIDATE
    assert verdict(cc, 90) is Verdict.STALE_WHILE_REVALIDATE
    assert verdict(cc, 91) is Verdict.REVALIDATE


def test_invalid_stale_while_revalidate_grants_nothing_rfc5861_s3() -> None:
    assert verdict("max-age=60, stale-while-revalidate=x", 61) is Verdict.REVALIDATE


def test_request_no_cache_beats_stale_while_revalidate_rfc9111_s5_2_1_4() -> None:
    cc = "max-age=60, stale-while-revalidate=30"
    assert verdict(cc, 70, "no-cache") is Verdict.REVALIDATE


# ---- RFC 5861 stale-if-error ----


def on_error(response_cc: str, at_age_s: float, request_cc: str = "", default_s: int = 0) -> bool:
    request = parse_cache_control([request_cc] if request_cc else [])
    return may_serve_stale_on_error(stored(response_cc), request, T0 + at_age_s, default_s)


def test_response_stale_if_error_window_rfc5861_s4() -> None:
    cc = "max-age=60, stale-if-error=100"
    assert on_error(cc, 160)
    assert not on_error(cc, 161)


def test_request_stale_if_error_window_rfc5861_s4() -> None:
    assert on_error("max-age=60", 100, "stale-if-error=40")
    assert not on_error("max-age=60", 101, "stale-if-error=40")


def test_config_default_stale_if_error() -> None:
    """Operator policy: a default window when neither side says anything (RFC 9111 §4.2.4
    allows serving stale when disconnected from the origin)."""
    assert on_error("max-age=60", 100, default_s=40)
    assert not on_error("max-age=60", 101, default_s=40)
    assert not on_error("max-age=60", 61, default_s=0)


def test_fresh_response_may_answer_on_error_rfc5861_s4() -> None:
    assert on_error("max-age=60, stale-if-error=1", 10)


@pytest.mark.parametrize("extra", ["must-revalidate", "proxy-revalidate", "no-cache"])
def test_stale_if_error_blocked_by_must_revalidate_family_rfc9111_s4_2_4(extra: str) -> None:
    cc = f"max-age=60, stale-if-error=100, {extra}"
    assert not on_error(cc, 70, "stale-if-error=100", default_s=100)


def test_s_maxage_blocks_client_and_default_stale_if_error_rfc9111_s4_2_4() -> None:
    """s-maxage implies proxy-revalidate (§5.2.2.10) and §4.2.4 forbids stale reuse against it;
    reuse.py's documented policy lets only the origin's own stale-if-error through, so neither a
    client's request directive nor the operator's default may serve it stale."""
    assert not on_error("s-maxage=60", 70, "stale-if-error=100")
    assert not on_error("s-maxage=60", 70, default_s=100)


def test_s_maxage_with_origin_stale_if_error_follows_documented_policy_rfc5861_s4() -> None:
    """reuse.py's documented choice: the origin's own stale-if-error still applies."""
    assert on_error("s-maxage=60, stale-if-error=100", 70)


def test_s_maxage_with_origin_stale_while_revalidate_follows_documented_policy_rfc5861_s3() -> None:
    """reuse.py's documented choice (see its docstring): s-maxage stops a client's max-stale but
    the origin's own stale-while-revalidate still applies."""
    cc = "s-maxage=60, stale-while-revalidate=30"
    assert verdict(cc, 70) is Verdict.STALE_WHILE_REVALIDATE
    assert verdict(cc, 70, "max-stale") is Verdict.STALE_WHILE_REVALIDATE
