"""Entity tags and preconditions (proxy/http/etags.py), RFC 9110 §8.8.3, §13.1.2, §13.1.3."""

from __future__ import annotations

import calendar

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.http.etags import (
    EntityTag,
    if_modified_since_passes,
    if_none_match_passes,
    parse_etag,
    parse_etag_list,
    strong_match,
    weak_match,
)

W1 = EntityTag('"1"', weak=True)
W2 = EntityTag('"2"', weak=True)
S1 = EntityTag('"1"', weak=False)


def test_parse_strong_and_weak_rfc9110_s8_8_3() -> None:
    assert parse_etag('"xyzzy"') == EntityTag('"xyzzy"', weak=False)
    assert parse_etag('W/"xyzzy"') == EntityTag('"xyzzy"', weak=True)
    assert parse_etag('""') == EntityTag('""', weak=False)
    assert parse_etag('  "a,b\\c"\t') == EntityTag('"a,b\\c"', weak=False)


@pytest.mark.parametrize(
    "value", ["", "xyzzy", 'w/"x"', 'W/ "x"', '"x', 'x"', '"a"b"', '"a b"', '"x" "y"', "*"]
)
def test_parse_rejects_malformed_rfc9110_s8_8_3(value: str) -> None:
    assert parse_etag(value) is None


@pytest.mark.parametrize(
    ("a", "b", "strong", "weak"),
    [
        (W1, W1, False, True),
        (W1, W2, False, False),
        (W1, S1, False, True),
        (S1, S1, True, True),
    ],
)
def test_comparison_table_rfc9110_s8_8_3_2(
    a: EntityTag, b: EntityTag, strong: bool, weak: bool
) -> None:
    assert strong_match(a, b) is strong
    assert strong_match(b, a) is strong
    assert weak_match(a, b) is weak
    assert weak_match(b, a) is weak


def test_parse_list_across_lines_rfc9110_s13_1_2() -> None:
    assert parse_etag_list(['"a,b", W/"c"', ' "d" ']) == [
        EntityTag('"a,b"', weak=False),
        EntityTag('"c"', weak=True),
        EntityTag('"d"', weak=False),
    ]


def test_parse_list_star_rfc9110_s13_1_2() -> None:
    assert parse_etag_list(["*"]) == "*"
    assert parse_etag_list([" * "]) == "*"


@pytest.mark.parametrize(
    "values",
    [['*, "a"'], ["*", '"a"'], ["*, *"], ['"a" "b"'], ["a"], ['"a'], ['W/"a",x'], ["**"]],
)
def test_parse_list_malformed_is_none_rfc9110_s13_1_2(values: list[str]) -> None:
    assert parse_etag_list(values) is None


def test_parse_list_empty_members_allowed_rfc9110_s5_6_1() -> None:
    assert parse_etag_list([', "a" ,,']) == [EntityTag('"a"', weak=False)]
    assert parse_etag_list([]) == []


def test_if_none_match_uses_weak_comparison_rfc9110_s13_1_2() -> None:
    assert if_none_match_passes(['W/"1"'], '"1"') is False
    assert if_none_match_passes(['"1"'], 'W/"1"') is False
    assert if_none_match_passes(['"2", "3"'], '"1"') is True
    assert if_none_match_passes(['"2"', '"1"'], '"1"') is False


def test_if_none_match_star_is_false_for_a_stored_response_rfc9110_s13_1_2() -> None:
    assert if_none_match_passes(["*"], '"1"') is False
    assert if_none_match_passes(["*"], None) is False


def test_if_none_match_malformed_is_ignored_rfc9110_s13_1_2() -> None:
    assert if_none_match_passes(["1"], '"1"') is None
    assert if_none_match_passes(['*, "1"'], '"1"') is None


def test_if_none_match_without_current_etag_is_true_rfc9110_s13_1_2() -> None:
    assert if_none_match_passes(['"1"'], None) is True
    assert if_none_match_passes(['"1"'], "garbage") is True


DATE = "Sun, 06 Nov 1994 08:49:37 GMT"
DATE_S = float(calendar.timegm((1994, 11, 6, 8, 49, 37)))


def test_if_modified_since_rfc9110_s13_1_3() -> None:
    assert if_modified_since_passes(DATE, DATE_S) is False
    assert if_modified_since_passes(DATE, DATE_S - 1) is False
    assert if_modified_since_passes(DATE, DATE_S + 1) is True


def test_if_modified_since_accepts_obsolete_formats_rfc9110_s13_1_3() -> None:
    assert if_modified_since_passes("Sunday, 06-Nov-94 08:49:37 GMT", DATE_S) is False


def test_if_modified_since_invalid_date_is_ignored_rfc9110_s13_1_3() -> None:
    assert if_modified_since_passes("yesterday", DATE_S) is None
    assert if_modified_since_passes("yesterday", None) is None


def test_if_modified_since_without_last_modified_is_true_rfc9110_s13_1_3() -> None:
    assert if_modified_since_passes(DATE, None) is True


ETAGC = st.characters(
    codec="latin-1", exclude_characters='"', min_codepoint=0x21, exclude_categories=()
)
TAGS = st.builds(
    EntityTag,
    opaque=st.text(alphabet=ETAGC.filter(lambda c: c != "\x7f"), max_size=8).map(
        lambda s: f'"{s}"'
    ),
    weak=st.booleans(),
)


def render(tag: EntityTag) -> str:
    return ("W/" if tag.weak else "") + tag.opaque


@settings(max_examples=200, deadline=None)
@given(st.lists(TAGS, max_size=5))
def test_etag_list_round_trips_rfc9110_s8_8_3(tags: list[EntityTag]) -> None:
    assert parse_etag_list([", ".join(render(tag) for tag in tags)]) == tags
    for tag in tags:
        assert parse_etag(render(tag)) == tag


@settings(max_examples=300, deadline=None)
@given(st.lists(st.text(alphabet=st.characters(max_codepoint=255), max_size=30), max_size=3))
def test_parsers_never_raise(values: list[str]) -> None:
    for value in values:
        parse_etag(value)
        if_modified_since_passes(value, 0.0)
    parse_etag_list(values)
    if_none_match_passes(values, '"x"')
