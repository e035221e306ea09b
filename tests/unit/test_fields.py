"""HTTP field access over header lists (proxy/http/fields.py), RFC 9110 §5 and RFC 9111 §3.2."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.http.fields import (
    Headers,
    combined_value,
    get_first,
    get_values,
    has_field,
    replace_fields,
    split_list,
    without_fields,
)

HEADERS: Headers = [
    ("Cache-Control", "max-age=5"),
    ("Vary", "Accept"),
    ("cache-control", "public"),
]


def test_get_values_is_case_insensitive_and_ordered_rfc9110_s5_1() -> None:
    assert get_values(HEADERS, "CACHE-CONTROL") == ["max-age=5", "public"]
    assert get_values(HEADERS, "etag") == []


def test_get_first_and_has_field_rfc9110_s5_1() -> None:
    assert get_first(HEADERS, "cache-control") == "max-age=5"
    assert get_first(HEADERS, "ETag") is None
    assert has_field(HEADERS, "vary")
    assert not has_field(HEADERS, "etag")


def test_has_field_true_for_empty_value_rfc9110_s5_1() -> None:
    assert has_field([("Pragma", "")], "pragma")


def test_combined_value_joins_with_comma_space_rfc9110_s5_3() -> None:
    assert combined_value(HEADERS, "Cache-Control") == "max-age=5, public"
    assert combined_value(HEADERS, "Vary") == "Accept"
    assert combined_value(HEADERS, "ETag") is None


def test_split_list_across_lines_trims_and_drops_empty_members_rfc9110_s5_6_1() -> None:
    assert split_list(["a, b", " ,c ,, ", "\td\t"]) == ["a", "b", "c", "d"]
    assert split_list([]) == []
    assert split_list([" , ,"]) == []


def test_split_list_keeps_commas_inside_quoted_string_rfc9110_s5_6_4() -> None:
    assert split_list(['no-cache="set-cookie, x-a", max-age=5']) == [
        'no-cache="set-cookie, x-a"',
        "max-age=5",
    ]


def test_split_list_honours_quoted_pair_escapes_rfc9110_s5_6_4() -> None:
    assert split_list(['a="x\\", y", b']) == ['a="x\\", y"', "b"]


def test_without_fields_removes_every_line_of_named_fields() -> None:
    assert without_fields(HEADERS, {"cache-control"}) == [("Vary", "Accept")]
    assert without_fields(HEADERS, ()) == HEADERS


def test_replace_fields_replaces_in_place_and_appends_new_rfc9111_s3_2() -> None:
    stored: Headers = [
        ("Date", "old"),
        ("ETag", '"1"'),
        ("X-A", "1"),
        ("x-a", "2"),
        ("Content-Length", "10"),
    ]
    update: Headers = [("X-A", "new"), ("Expires", "later"), ("Date", "new"), ("X-A", "new2")]
    assert replace_fields(stored, update) == [
        ("Date", "new"),
        ("ETag", '"1"'),
        ("X-A", "new"),
        ("X-A", "new2"),
        ("Content-Length", "10"),
        ("Expires", "later"),
    ]


def test_replace_fields_never_replaces_kept_fields_rfc9111_s3_2() -> None:
    stored: Headers = [("Content-Length", "10"), ("ETag", '"1"')]
    update: Headers = [("content-length", "0"), ("ETag", '"2"'), ("Content-Encoding", "gzip")]
    merged = replace_fields(stored, update, keep={"content-length", "content-encoding"})
    assert merged == [("Content-Length", "10"), ("ETag", '"2"')]


def test_replace_fields_does_not_mutate_inputs() -> None:
    stored: Headers = [("A", "1")]
    update: Headers = [("A", "2")]
    replace_fields(stored, update)
    assert stored == [("A", "1")]
    assert update == [("A", "2")]


TOKENS = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-!#$%&'*+.^_`|~", min_size=1)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.lists(TOKENS, max_size=5), max_size=4))
def test_split_list_round_trips_token_lists_rfc9110_s5_6_1(lines: list[list[str]]) -> None:
    values = [", ".join(members) for members in lines]
    assert split_list(values) == [member for members in lines for member in members]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.text(alphabet=st.characters(max_codepoint=255)), max_size=4))
def test_split_list_never_raises_and_members_are_trimmed(values: list[str]) -> None:
    for member in split_list(values):
        assert member
        assert member == member.strip(" \t")
