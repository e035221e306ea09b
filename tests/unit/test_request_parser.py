"""parse_request_head and LengthBodyReader: each rule cites RFC 9112 / RFC 9110."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.http.request_parser import (
    CHUNKED,
    NO_BODY,
    Length,
    LengthBodyReader,
    ProtocolError,
    RequestHead,
    parse_request_head,
)

WRK = b"GET /obj HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n"


def parse(data: bytes | bytearray, **limits: int) -> RequestHead:
    result = parse_request_head(data, **limits)
    assert result is not None
    head, consumed = result
    assert consumed == len(data)
    return head


def status_of(data: bytes, **limits: int) -> int:
    with pytest.raises(ProtocolError) as info:
        parse_request_head(data, **limits)
    return info.value.status


def request(*fields: str, line: str = "GET / HTTP/1.1") -> bytes:
    return (line + "\r\n" + "".join(f + "\r\n" for f in fields) + "\r\n").encode("latin-1")


def test_wrk_request_parses_to_expected_head() -> None:
    head = parse(WRK)
    assert head == RequestHead(
        "GET", "/obj", (1, 1), [("Host", "127.0.0.1:8080")], True, NO_BODY, False
    )


def test_incomplete_head_returns_none_rfc9112_s2() -> None:
    for cut in range(len(WRK)):
        assert parse_request_head(WRK[:cut]) is None


def test_pipelined_requests_consumed_count_rfc9112_s9_3_2() -> None:
    second = b"POST /b HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc"
    result = parse_request_head(WRK + second)
    assert result is not None
    assert result[1] == len(WRK)
    head2, used2 = parse_request_head((WRK + second)[result[1] :]) or (None, 0)
    assert head2 is not None
    assert head2.body == Length(3)
    assert second[used2:] == b"abc"


def test_leading_empty_lines_ignored_rfc9112_s2_2() -> None:
    result = parse_request_head(b"\r\n\r\n" + WRK)
    assert result is not None
    assert result[0].target == "/obj"
    assert result[1] == len(WRK) + 4


@pytest.mark.parametrize(
    "data",
    [
        b"GET / HTTP/1.1\nHost: a\n\n",
        b"GET / HTTP/1.1\r\nHost: a\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nX: 1\nY: 2\r\n\r\n",
        b"\nGET / HTTP/1.1\r\nHost: a\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\rX: b\r\n\r\n",
        b"GET / HTTP/1.1\r\r\nHost: a\r\n\r\n",
        b"\r\rGET / HTTP/1.1\r\nHost: a\r\n\r\n",
    ],
)
def test_bare_lf_and_bare_cr_rejected_rfc9112_s2_2(data: bytes) -> None:
    assert status_of(data) == 400


@pytest.mark.parametrize("ctl", [0, 1, 8, 0x0B, 0x0C, 0x1F, 0x7F])
def test_ctl_in_field_value_rejected_rfc9110_s5_5(ctl: int) -> None:
    assert status_of(request("Host: a", "X: a" + chr(ctl) + "b")) == 400


def test_htab_and_obs_text_in_value_allowed_rfc9110_s5_5() -> None:
    head = parse(request("Host: a", "X: a\tb\xe9\xff", "Y:\t v \t"))
    assert head.headers[1:] == [("X", "a\tb\xe9\xff"), ("Y", "v")]


def test_field_values_ows_stripped_names_kept_rfc9112_s5() -> None:
    head = parse(request("hOsT:a", "X-Empty:", "X-Spaces:   ", "X-In:  a  b  "))
    assert head.headers == [("hOsT", "a"), ("X-Empty", ""), ("X-Spaces", ""), ("X-In", "a  b")]


def test_obs_fold_rejected_rfc9112_s5_2() -> None:
    assert status_of(request("Host: a", "X: a", " folded")) == 400
    assert status_of(request("Host: a", "X: a", "\tfolded")) == 400


def test_whitespace_before_colon_rejected_rfc9112_s5_1() -> None:
    assert status_of(request("Host : a")) == 400
    assert status_of(request("Host: a", "X\t: b")) == 400


@pytest.mark.parametrize("name", ["X Y", "X(Y)", "X@Y", "", "X\xe9", "X/Y"])
def test_field_name_must_be_token_rfc9110_s5_1(name: str) -> None:
    assert status_of(request("Host: a", name + ": v")) == 400


@pytest.mark.parametrize("method", ["PURGE", "FOOBAR", "PROPFIND", "M-SEARCH", "get", "A!#$%&'*"])
def test_any_token_method_accepted_case_sensitive_rfc9110_s9_1(method: str) -> None:
    assert parse(request("Host: a", line=f"{method} / HTTP/1.1")).method == method


@pytest.mark.parametrize(
    "line",
    [
        "GET  / HTTP/1.1",
        "GET / HTTP/1.1 ",
        "GET /  HTTP/1.1",
        " GET / HTTP/1.1",
        "GET\t/ HTTP/1.1",
        "G(T / HTTP/1.1",
        "GET / http/1.1",
        "GET / HTTP/1.1.1",
        "GET / HTTP/11",
        "GET / HTTP/1.x",
        "GET /a b HTTP/1.1",
        "GET",
        "GET /",
        "",
    ],
)
def test_malformed_request_line_rejected_rfc9112_s3(line: str) -> None:
    assert status_of(request("Host: a", line=line)) == 400


@pytest.mark.parametrize("version", ["2.0", "1.2", "0.9", "3.7"])
def test_other_http_version_is_505_rfc9112_s2_3(version: str) -> None:
    assert status_of(request("Host: a", line=f"GET / HTTP/{version}")) == 505


def test_http_1_0_without_host_ok_rfc9112_s3_2() -> None:
    head = parse(request(line="GET / HTTP/1.0"))
    assert head.version == (1, 0)
    assert head.keep_alive is False


@pytest.mark.parametrize(
    ("line", "target"),
    [
        ("GET http://example.com/x?y HTTP/1.1", "http://example.com/x?y"),
        ("GET HTTPS://example.com:443 HTTP/1.1", "HTTPS://example.com:443"),
        ("CONNECT example.com:443 HTTP/1.1", "example.com:443"),
        ("CONNECT [::1]:8443 HTTP/1.1", "[::1]:8443"),
        ("OPTIONS * HTTP/1.1", "*"),
        ("OPTIONS /x HTTP/1.1", "/x"),
        ("GET //a/%20?q=1&r HTTP/1.1", "//a/%20?q=1&r"),
    ],
)
def test_request_target_forms_accepted_rfc9112_s3_2(line: str, target: str) -> None:
    assert parse(request("Host: a", line=line)).target == target


@pytest.mark.parametrize(
    "line",
    [
        "GET example.com:443 HTTP/1.1",
        "CONNECT / HTTP/1.1",
        "CONNECT example.com HTTP/1.1",
        "CONNECT example.com:99999 HTTP/1.1",
        "GET * HTTP/1.1",
        "GET ftp://example.com/ HTTP/1.1",
        "GET http:///x HTTP/1.1",
        "GET http://user@example.com/ HTTP/1.1",
        "GET x HTTP/1.1",
    ],
)
def test_request_target_form_misused_rejected_rfc9112_s3_2(line: str) -> None:
    assert status_of(request("Host: a", line=line)) == 400


def test_http_1_1_without_host_rejected_rfc9112_s3_2() -> None:
    assert status_of(request("X: y")) == 400


def test_repeated_host_rejected_rfc9112_s3_2() -> None:
    assert status_of(request("Host: a", "host: a")) == 400
    assert status_of(request("Host: a", "Host: a", line="GET / HTTP/1.0")) == 400


@pytest.mark.parametrize(
    "host", ["a b", "user@a", "a/b", "a:80x", "a:123456", "a:65536", "[::1", "a:1:2"]
)
def test_invalid_host_rejected_rfc9112_s3_2(host: str) -> None:
    assert status_of(request("Host: " + host)) == 400


@pytest.mark.parametrize("host", ["", "a", "a:80", "a:", "127.0.0.1:65535", "[::1]:8080", "x%41"])
def test_valid_host_accepted_rfc9110_s7_2(host: str) -> None:
    assert parse(request("Host: " + host)).headers[0] == ("Host", host)


def test_te_and_cl_together_rejected_rfc9112_s6_1() -> None:
    assert status_of(request("Host: a", "Transfer-Encoding: chunked", "Content-Length: 3")) == 400


def test_te_in_http_1_0_rejected_rfc9112_s6_1() -> None:
    assert status_of(request("Transfer-Encoding: chunked", line="POST / HTTP/1.0")) == 400


@pytest.mark.parametrize(
    "codings",
    [
        ["chunked"],
        ["gzip, chunked"],
        ["gzip", "Chunked"],
        ["deflate ,CHUNKED"],
        ["x-gzip;level=1, chunked"],
    ],
)
def test_te_with_final_chunked_is_chunked_rfc9112_s6_3(codings: list[str]) -> None:
    fields = ["Host: a"] + [f"Transfer-Encoding: {c}" for c in codings]
    assert parse(request(*fields, line="POST / HTTP/1.1")).body is CHUNKED


@pytest.mark.parametrize(
    ("value", "status"),
    [
        ("gzip", 400),
        ("chunked, gzip", 400),
        ("chunked, chunked", 400),
        ("", 400),
        ("chunked;x=1", 400),
        ("foo, chunked", 501),
        ("br", 501),
        ("chunked, identity", 501),
    ],
)
def test_bad_transfer_encoding_rfc9112_s6_1(value: str, status: int) -> None:
    assert status_of(request("Host: a", "Transfer-Encoding: " + value)) == status


def test_chunked_repeated_across_fields_rejected_rfc9112_s6_1() -> None:
    fields = ("Host: a", "Transfer-Encoding: chunked", "Transfer-Encoding: chunked")
    assert status_of(request(*fields)) == 400


@pytest.mark.parametrize(
    ("values", "size"),
    [(["0"], 0), (["42"], 42), (["42, 42"], 42), (["7", "7"], 7), (["007"], 7)],
)
def test_content_length_accepted_rfc9110_s8_6(values: list[str], size: int) -> None:
    fields = ["Host: a"] + [f"Content-Length: {v}" for v in values]
    assert parse(request(*fields)).body == Length(size)


@pytest.mark.parametrize(
    "values",
    [["+5"], ["-5"], ["5 5"], ["0x10"], ["1e3"], [""], ["5,"], ["5, 6"], ["5", "6"], ["9" * 19]],
)
def test_bad_content_length_rejected_rfc9110_s8_6(values: list[str]) -> None:
    fields = ["Host: a"] + [f"Content-Length: {v}" for v in values]
    assert status_of(request(*fields)) == 400


def test_no_body_without_cl_or_te_rfc9112_s6_3() -> None:
    assert parse(request("Host: a", line="POST / HTTP/1.1")).body is NO_BODY


@pytest.mark.parametrize(
    ("version", "connection", "keep_alive"),
    [
        ("1.1", None, True),
        ("1.1", "close", False),
        ("1.1", "Upgrade, CLOSE", False),
        ("1.1", "keep-alive", True),
        ("1.0", None, False),
        ("1.0", "Keep-Alive", True),
        ("1.0", "keep-alive, close", False),
    ],
)
def test_persistence_rfc9112_s9_3(version: str, connection: str | None, keep_alive: bool) -> None:
    fields = ["Host: a"] + ([f"Connection: {connection}"] if connection else [])
    assert parse(request(*fields, line=f"GET / HTTP/{version}")).keep_alive is keep_alive


def test_expect_100_continue_case_insensitive_rfc9110_s10_1_1() -> None:
    assert parse(request("Host: a", "Expect: 100-Continue")).expect_continue is True
    assert parse(request("Host: a")).expect_continue is False


def test_expect_100_continue_ignored_in_http_1_0_rfc9110_s10_1_1() -> None:
    assert parse(request("Expect: 100-continue", line="GET / HTTP/1.0")).expect_continue is False


@pytest.mark.parametrize("value", ["foo", "100-continue, foo", "", "200-ok"])
def test_other_expectation_is_417_rfc9110_s10_1_1(value: str) -> None:
    assert status_of(request("Host: a", "Expect: " + value)) == 417


def test_request_line_too_long_is_414_rfc9112_s3() -> None:
    long_line = "GET /" + "a" * 100 + " HTTP/1.1"
    assert status_of(request("Host: a", line=long_line), max_line_bytes=64) == 414
    assert status_of(long_line.encode()[:80], max_line_bytes=64) == 414


def test_head_too_large_is_431_even_incomplete_rfc6585_s5() -> None:
    partial = b"GET / HTTP/1.1\r\nHost: a\r\n" + b"X: y\r\n" * 20
    assert status_of(partial, max_head_bytes=64) == 431
    assert status_of(partial + b"\r\n", max_head_bytes=64) == 431


def test_too_many_or_too_long_fields_is_431_rfc6585_s5() -> None:
    fields = ["Host: a"] + ["X: y"] * 5
    assert status_of(request(*fields), max_headers=5) == 431
    assert parse(request(*fields), max_headers=6).headers[-1] == ("X", "y")
    assert status_of(request("Host: a", "X: " + "v" * 100), max_line_bytes=64) == 431


@pytest.mark.parametrize(
    "prefix",
    [
        b"G(T",
        b" ",
        b"GET  ",
        b"GET /\x00",
        b"GET / HTTP/1.1\r\nHost: a\r\n X",
        b"GET / HTTP/1.1\r\nX :",
    ],
)
def test_known_bad_prefix_rejected_without_waiting_rfc9112_s2_2(prefix: bytes) -> None:
    assert status_of(prefix) == 400


def test_bytearray_buffer_accepted() -> None:
    assert parse(bytearray(WRK)).headers == [("Host", "127.0.0.1:8080")]


def test_length_body_reader_splits_leftover_rfc9112_s6_2() -> None:
    reader = LengthBodyReader(5)
    assert reader.feed(b"he") == ([b"he"], False, b"")
    assert reader.feed(b"llo GET") == ([b"llo"], True, b" GET")
    assert reader.is_complete
    assert LengthBodyReader(0).feed(b"next") == ([], True, b"next")


# --- hypothesis: the one-error fuzz invariant and whole-vs-byte-by-byte agreement -----------

TOKEN = st.text(alphabet="!#$%&'*+-.^_`|~abcXYZ019", min_size=1, max_size=8)
VALUE = st.text(alphabet=st.sampled_from(["a", " ", "\t", "\xe9", "/", ",", "=", "\xff"]))


@st.composite
def valid_requests(draw: st.DrawFn) -> bytes:
    method = draw(st.sampled_from(["GET", "HEAD", "PURGE", "POST", "FOOBAR"]))
    target = "/" + draw(st.text(alphabet="abc/?=&%", max_size=10))
    names = draw(st.lists(TOKEN.map(lambda t: "X-" + t), max_size=6))
    fields = [f"{name}:{draw(VALUE)}" for name in names]
    fields.insert(draw(st.integers(0, len(fields))), "Host: " + draw(st.sampled_from(["a", "b:1"])))
    framing = draw(st.sampled_from([[], ["Content-Length: 12"], ["Transfer-Encoding: chunked"]]))
    extra = draw(st.sampled_from([[], ["Connection: close"], ["Expect: 100-continue"]]))
    leading = "\r\n" * draw(st.integers(0, 2))
    return leading.encode() + request(*fields, *framing, *extra, line=f"{method} {target} HTTP/1.1")


def parse_growing(data: bytes) -> tuple[RequestHead, int] | None:
    """Feed a growing buffer one byte at a time, as a connection would."""
    for cut in range(1, len(data) + 1):
        result = parse_request_head(data[:cut])
        if result is not None:
            return result
    return None


@settings(max_examples=150, deadline=None)
@given(valid_requests())
def test_valid_request_same_head_whole_or_byte_by_byte(data: bytes) -> None:
    whole = parse_request_head(data)
    assert whole is not None
    assert whole[1] == len(data)
    assert parse_growing(data) == whole


@settings(max_examples=150, deadline=None)
@given(valid_requests(), st.data())
def test_mutated_request_only_protocol_error(data: bytes, draw: st.DataObject) -> None:
    index = draw.draw(st.integers(0, len(data) - 1))
    byte = draw.draw(st.integers(0, 255))
    mutated = data[:index] + bytes([byte]) + data[index + 1 :]
    statuses = set()
    for cut in range(len(mutated) + 1):
        try:
            parse_request_head(mutated[:cut], max_line_bytes=40, max_head_bytes=200)
        except ProtocolError as error:
            statuses.add(error.status)
    assert statuses <= {400, 414, 417, 431, 501, 505}


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=120))
def test_arbitrary_bytes_only_protocol_error(data: bytes) -> None:
    for cut in range(len(data) + 1):
        try:
            result = parse_request_head(data[:cut])
        except ProtocolError:
            continue
        assert result is None or 0 < result[1] <= cut
