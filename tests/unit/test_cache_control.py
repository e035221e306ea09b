"""Cache-Control, targeted cache-control and Pragma (proxy/http/cache_control.py).

RFC 9111 §5.2, §1.2.2, §5.4; RFC 9213 §2.1; RFC 8941 §3.2, §4.2.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.http.cache_control import (
    INVALID,
    MAX_DELTA_SECONDS,
    Directives,
    parse_cache_control,
    parse_pragma_no_cache,
    parse_targeted_cache_control,
)


def test_invalid_constant_is_minus_one() -> None:
    assert INVALID == -1
    assert MAX_DELTA_SECONDS == 2**31


def test_bare_and_argument_directives_across_lines_rfc9111_s5_2() -> None:
    cc = parse_cache_control(["public, max-age=60", "s-maxage=30"])
    assert cc.has("public")
    assert cc.get("public") is None
    assert cc.get("max-age") == "60"
    assert cc.seconds("max-age") == 60
    assert cc.seconds("s-maxage") == 30
    assert not cc.has("no-store")
    assert cc.seconds("no-store") is None


def test_quoted_string_with_commas_rfc9111_s5_2_2_4() -> None:
    cc = parse_cache_control(['no-cache="set-cookie, x-a", max-age=5'])
    assert cc.get("no-cache") == "set-cookie, x-a"
    assert cc.field_names("no-cache") == ("set-cookie", "x-a")
    assert cc.seconds("max-age") == 5


def test_uppercase_directive_names_are_case_insensitive_rfc9111_s5_2() -> None:
    cc = parse_cache_control(['No-Store, MAX-AGE=7, Private="Set-Cookie"'])
    assert cc.has("no-store")
    assert cc.has("NO-STORE")
    assert cc.seconds("max-age") == 7
    assert cc.values == {"no-store": None, "max-age": "7", "private": "Set-Cookie"}
    assert cc.field_names("private") == ("set-cookie",)


@pytest.mark.parametrize("argument", ["-1", "1.5", "", "abc", "1e3", "+5", "0x10", '" 60"'])
def test_invalid_delta_seconds_is_invalid_rfc9111_s1_2_2(argument: str) -> None:
    assert parse_cache_control([f"max-age={argument}"]).seconds("max-age") == INVALID


def test_bare_max_age_is_invalid_rfc9111_s5_2_1_1() -> None:
    assert parse_cache_control(["max-age"]).seconds("max-age") == INVALID


def test_quoted_delta_seconds_is_accepted_rfc9111_s5_2() -> None:
    assert parse_cache_control(['max-age="60"']).seconds("max-age") == 60


def test_huge_delta_seconds_clamps_to_2_pow_31_rfc9111_s1_2_2() -> None:
    assert parse_cache_control(["max-age=99999999999"]).seconds("max-age") == 2**31
    assert parse_cache_control(["max-age=2147483648"]).seconds("max-age") == 2**31
    assert parse_cache_control(["max-age=2147483647"]).seconds("max-age") == 2**31 - 1


def test_duplicate_directive_first_wins_rfc9111_s4_2_1() -> None:
    assert parse_cache_control(["max-age=1, max-age=100"]).seconds("max-age") == 1
    assert parse_cache_control(["max-age=1", "MAX-AGE=100"]).seconds("max-age") == 1


def test_field_names_absent_and_bare_rfc9111_s5_2_2_7() -> None:
    cc = parse_cache_control(["private"])
    assert cc.field_names("private") == ()
    assert cc.field_names("no-cache") is None


def test_junk_members_are_skipped_rfc9111_s5_2() -> None:
    cc = parse_cache_control(['=5, "quoted", , max-age=3, bad name=1, public'])
    assert cc.values == {"max-age": "3", "public": None}


def test_malformed_argument_keeps_the_directive_present_rfc9111_s5_2() -> None:
    cc = parse_cache_control(['no-store=a b, private="unterminated, max-age=x'])
    assert cc.has("no-store")
    assert cc.get("no-store") == "a b"
    # The unterminated quote swallows the rest of the line (RFC 9110 §5.6.4).
    assert cc.get("private") == '"unterminated, max-age=x'
    assert not cc.has("max-age")


def test_whitespace_around_members_rfc9110_s5_6_1() -> None:
    cc = parse_cache_control(["  max-age=5 ,\tno-cache  "])
    assert cc.values == {"max-age": "5", "no-cache": None}


def test_quoted_pair_is_unescaped_rfc9110_s5_6_4() -> None:
    cc = parse_cache_control(['ext="a\\"b"'])
    assert cc.get("ext") == 'a"b'


def test_empty_field_gives_no_directives() -> None:
    assert parse_cache_control([]).values == {}
    assert parse_cache_control([""]).values == {}


def test_pragma_no_cache_rfc9111_s5_4() -> None:
    assert parse_pragma_no_cache(["no-cache"])
    assert parse_pragma_no_cache(["foo, No-Cache"])
    assert not parse_pragma_no_cache(["foo=no-cache"])
    assert not parse_pragma_no_cache([])


# ---- RFC 9213 targeted fields ----


def test_targeted_field_valid_dictionary_rfc9213_s2_1() -> None:
    cc = parse_targeted_cache_control(['max-age=60, no-cache="set-cookie", private, s-maxage=5'])
    assert cc is not None
    assert cc.seconds("max-age") == 60
    assert cc.field_names("no-cache") == ("set-cookie",)
    assert cc.has("private")
    assert cc.get("private") is None
    assert cc.seconds("s-maxage") == 5


def test_targeted_field_combines_lines_rfc9213_s2_1() -> None:
    cc = parse_targeted_cache_control(["max-age=60", "no-store"])
    assert cc is not None
    assert cc.values == {"max-age": "60", "no-store": None}


def test_targeted_field_parameters_ignored_and_booleans_rfc9213_s2_1() -> None:
    cc = parse_targeted_cache_control(["max-age=60;foo=bar, public=?1, no-store=?0, x;a=1"])
    assert cc is not None
    assert cc.values == {"max-age": "60", "public": None, "x": None}


def test_targeted_field_duplicate_key_last_wins_rfc8941_s4_2_2() -> None:
    cc = parse_targeted_cache_control(["max-age=1, max-age=100"])
    assert cc is not None
    assert cc.seconds("max-age") == 100


def test_targeted_field_other_item_types_rfc8941_s3_3() -> None:
    cc = parse_targeted_cache_control(['a=tok/en, b=1.5, c=:aGk=:, d=("x" y), e=-3, f=007'])
    assert cc is not None
    assert cc.values == {"a": "tok/en", "b": "1.5", "c": "aGk=", "d": "x, y", "e": "-3", "f": "7"}
    assert cc.seconds("b") == INVALID
    assert cc.seconds("e") == INVALID
    assert cc.field_names("d") == ("x", "y")


@pytest.mark.parametrize(
    "value",
    [
        "",
        "   ",
        "Max-Age=60",  # keys are lowercase in RFC 8941 §3.2
        "max-age=60,",
        "max-age=60,,public",
        "max-age==60",
        "max-age=1.",
        "max-age=1.2345",
        "max-age=1234567890123456",
        "max-age=-",
        'no-cache="unterminated',
        'no-cache="bad\\escape"',
        "max-age=60 public",
        "max-age=?2",
        "max-age=60; Foo=1",
        "d=(a b",
        "d=(a,b)",
        "1abc",
        "=60",
        "max-age=60;",
        'no-cache="é"',
        "max-age=[60]",
    ],
)
def test_targeted_field_invalid_dictionary_is_ignored_rfc9213_s2_1(value: str) -> None:
    assert parse_targeted_cache_control([value]) is None


@pytest.mark.parametrize(
    "value",
    [
        'max-age="10000"',  # the HTTP cache tests' cdn-cc-invalid-sh-type-wrong
        "max-age=1.5",
        "max-age=-1",
        "max-age=?1",
        "max-age=tok",
        "max-age=(1 2)",
        "s-maxage=:aGk=:",
        'stale-while-revalidate="60"',
        "stale-if-error=6.0",
        "no-store=1",
        'public="yes"',
        "must-revalidate=tok",
        "private=1",
        "no-cache=2.5",
        "max-age=60, immutable=1",
    ],
)
def test_targeted_field_with_a_known_directive_of_the_wrong_type_is_ignored_rfc9213_s2_1(
    value: str,
) -> None:
    """RFC 9213 §2.1: directive types are inferred from Cache-Control and values that break
    them SHOULD NOT be consumed; RFC 8941 §2's default for that is ignoring the field."""
    assert parse_targeted_cache_control([value]) is None


def test_targeted_field_types_that_fit_are_kept_rfc9213_s2_1() -> None:
    cc = parse_targeted_cache_control(
        ['max-age=0, s-maxage=5, no-cache="a, b", private=?1, public, no-store=?0, x="any"']
    )
    assert cc is not None
    assert cc.values == {
        "max-age": "0",
        "s-maxage": "5",
        "no-cache": "a, b",
        "private": None,
        "public": None,
        "x": "any",
    }


def test_targeted_field_absent_is_none_rfc9213_s2_1() -> None:
    assert parse_targeted_cache_control([]) is None


def test_directives_is_frozen() -> None:
    cc = Directives({"public": None})
    with pytest.raises(AttributeError):
        cc.values = {}  # type: ignore[misc]


LATIN1 = st.text(alphabet=st.characters(max_codepoint=255), max_size=60)
SF_ALPHABET = st.sampled_from(list('abcz09-_.*=;,"?:() \\/AZé\t'))


@settings(max_examples=300, deadline=None)
@given(st.lists(LATIN1, max_size=3))
def test_cache_control_parse_never_raises(values: list[str]) -> None:
    cc = parse_cache_control(values)
    for name in cc.values:
        assert name == name.lower()
        seconds = cc.seconds(name)
        assert seconds is not None
        assert INVALID <= seconds <= 2**31
        cc.field_names(name)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(LATIN1, st.text(alphabet=SF_ALPHABET, max_size=40)), max_size=3))
def test_targeted_parse_never_raises(values: list[str]) -> None:
    cc = parse_targeted_cache_control(values)
    if cc is not None:
        for name in cc.values:
            cc.seconds(name)
            cc.field_names(name)


# Keys that RFC 9213 §2.1 types as Boolean or String would make the field invalid with an
# Integer value (tested above), so the round trip draws its keys from the others.
NON_INTEGER_DIRECTIVES = {"no-store", "no-cache", "private", "public", "immutable"}


@settings(max_examples=200, deadline=None)
@given(
    st.dictionaries(
        st.from_regex(r"[a-z][a-z0-9-]{0,8}", fullmatch=True).filter(
            lambda key: key not in NON_INTEGER_DIRECTIVES
        ),
        st.integers(min_value=0, max_value=10**15 - 1),
        max_size=5,
    )
)
def test_targeted_integer_dictionary_round_trips_rfc8941_s4_1_2(items: dict[str, int]) -> None:
    text = ", ".join(f"{key}={value}" for key, value in items.items())
    cc = parse_targeted_cache_control([text])
    if not items:
        assert cc is None
        return
    assert cc is not None
    assert {key: cc.seconds(key) for key in items} == {
        key: min(value, 2**31) for key, value in items.items()
    }
