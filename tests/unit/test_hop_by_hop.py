"""Hop-by-hop field removal (proxy/http/hop_by_hop.py), RFC 9110 §7.6.1."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.http.fields import Headers
from proxy.http.hop_by_hop import (
    HOP_BY_HOP,
    REQUEST_HOP_BY_HOP,
    connection_options,
    strip_hop_by_hop,
    strip_request_hop_by_hop,
)


def test_fixed_set_rfc9110_s7_6_1() -> None:
    assert {
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "transfer-encoding",
        "upgrade",
    } == HOP_BY_HOP
    assert "trailer" not in HOP_BY_HOP  # end-to-end, RFC 9110 §6.6.2
    assert HOP_BY_HOP | {"proxy-authorization"} == REQUEST_HOP_BY_HOP


def test_connection_options_lowercase_across_lines_rfc9110_s7_6_1() -> None:
    headers: Headers = [("Connection", "close, X-Foo"), ("connection", " Keep-Alive ,")]
    assert connection_options(headers) == {"close", "x-foo", "keep-alive"}
    assert connection_options([]) == set()


def test_connection_close_x_foo_removes_x_foo_rfc9110_s7_6_1() -> None:
    headers: Headers = [
        ("Host", "example.com"),
        ("Connection", "close, X-Foo"),
        ("X-Foo", "1"),
        ("x-foo", "2"),
        ("X-Bar", "keep me"),
    ]
    assert strip_hop_by_hop(headers) == [("Host", "example.com"), ("X-Bar", "keep me")]


def test_fixed_fields_removed_without_connection_rfc9110_s7_6_1() -> None:
    headers: Headers = [
        ("Keep-Alive", "timeout=5"),
        ("Proxy-Connection", "keep-alive"),
        ("TE", "trailers"),
        ("Transfer-Encoding", "chunked"),
        ("Upgrade", "websocket"),
        ("Trailer", "X-Checksum"),
        ("Proxy-Authorization", "Basic eA=="),
        ("ETag", '"1"'),
    ]
    assert strip_hop_by_hop(headers) == [
        ("Trailer", "X-Checksum"),
        ("Proxy-Authorization", "Basic eA=="),
        ("ETag", '"1"'),
    ]


def test_request_side_also_drops_proxy_authorization_rfc9110_s11_7_2() -> None:
    headers: Headers = [
        ("Proxy-Authorization", "Basic eA=="),
        ("Authorization", "Bearer t"),
        ("Connection", "X-Foo"),
        ("X-Foo", "1"),
    ]
    assert strip_request_hop_by_hop(headers) == [("Authorization", "Bearer t")]


def test_strip_does_not_mutate_input() -> None:
    headers: Headers = [("Connection", "close")]
    strip_hop_by_hop(headers)
    assert headers == [("Connection", "close")]


NAMES = st.sampled_from(["Connection", "X-Foo", "TE", "ETag", "Keep-Alive", "Vary"])


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(NAMES, st.text(alphabet='ab, X-Foo"etag', max_size=12)), max_size=8))
def test_stripped_headers_hold_no_hop_by_hop_field_rfc9110_s7_6_1(headers: Headers) -> None:
    stripped = strip_hop_by_hop(headers)
    removed = HOP_BY_HOP | connection_options(headers)
    assert all(name.lower() not in removed for name, _ in stripped)
    assert [line for line in headers if line[0].lower() not in removed] == stripped
