"""Response heads the proxy writes (proxy/responses.py, proxy/http/wire.py): RFC 9110 §15.4.5
(304 fields), RFC 9111 §5.1 (Age), RFC 9112 §4, §5, §9.3 (status line, fields, persistence)."""

from __future__ import annotations

import pytest

from proxy.cache.entry import StoredResponse
from proxy.http.wire import (
    reason_phrase,
    serialize_fields,
    serialize_status_line,
    status_allows_body,
)
from proxy.responses import (
    error_response,
    forwarded_head,
    not_modified_head,
    render_trailer,
    stored_head,
)
from tests.unit.cache_builders import T0, http_date, stored_response

TRAILER = render_trailer("cachet; hit", "HIT", "req-1", keep_alive=True, http10=False)


def lines(head: bytes) -> list[str]:
    return head.decode("latin-1").split("\r\n")


def cached() -> StoredResponse:
    return stored_response(
        [
            ("Cache-Control", "max-age=60"),
            ("ETag", '"v1"'),
            ("Content-Type", "text/plain"),
            ("Vary", "Accept-Encoding"),
            ("Last-Modified", http_date(T0 - 60)),
            ("X-Custom", "1"),
        ],
        body=b"hello",
    )


def test_stored_head_has_age_and_per_response_fields_rfc9111_s5_1() -> None:
    head = stored_head(cached(), 12.9, TRAILER)
    got = lines(head)
    assert got[0] == "HTTP/1.1 200 OK"
    assert "Age: 12" in got
    assert "Content-Length: 5" in got
    assert "Cache-Status: cachet; hit" in got
    assert "X-Cache-Status: HIT" in got
    assert "X-Request-ID: req-1" in got
    assert head.endswith(b"\r\n\r\n")
    assert sum(1 for line in got if line.lower().startswith("age:")) == 1


def test_not_modified_carries_only_304_fields_rfc9110_s15_4_5() -> None:
    got = lines(not_modified_head(cached(), 3, "1.1 cachet", TRAILER))
    assert got[0] == "HTTP/1.1 304 Not Modified"
    fields = {line.split(":", 1)[0].lower() for line in got[1:] if ":" in line}
    assert {"cache-control", "etag", "vary", "date", "age", "via"} <= fields
    assert "content-type" not in fields
    assert "x-custom" not in fields
    assert "content-length" not in fields


@pytest.mark.parametrize(
    ("keep_alive", "http10", "expected"),
    [
        (True, False, None),
        (True, True, "Connection: keep-alive"),
        (False, False, "Connection: close"),
        (False, True, "Connection: close"),
    ],
)
def test_connection_field_rfc9112_s9_3(
    keep_alive: bool, http10: bool, expected: str | None
) -> None:
    got = lines(render_trailer("c; hit", "HIT", "r", keep_alive, http10))
    connection = [line for line in got if line.lower().startswith("connection")]
    assert connection == ([expected] if expected else [])


def test_forwarded_head_fills_missing_reason_rfc9112_s4() -> None:
    head = forwarded_head(404, "", [("Content-Length", "0")], TRAILER)
    assert lines(head)[0] == "HTTP/1.1 404 Not Found"


def test_error_response_is_not_stored_downstream_rfc9111_s5_2_2_5() -> None:
    response = error_response(502, "origin unavailable", "1.1 cachet", "date", TRAILER)
    head, _, body = response.partition(b"\r\n\r\n")
    got = lines(head)
    assert got[0] == "HTTP/1.1 502 Bad Gateway"
    assert "Cache-Control: no-store" in got
    assert f"Content-Length: {len(body)}" in got
    assert body == b"origin unavailable\n"


def test_field_values_cannot_split_the_head_rfc9112_s5() -> None:
    """A CR or LF in a value from the origin must not start a new field line."""
    wire = serialize_fields([("X-Evil", "a\r\nSet-Cookie: sid=1"), ("X-Ok", "b")])
    assert wire.count(b"\r\n") == 2
    assert b"\r\nSet-Cookie" not in wire


def test_status_line_and_reason_phrase_rfc9112_s4() -> None:
    assert serialize_status_line(200, "OK") == b"HTTP/1.1 200 OK\r\n"
    assert reason_phrase(599) == ""
    assert reason_phrase(304) == "Not Modified"


@pytest.mark.parametrize(
    ("status", "allowed"), [(100, False), (200, True), (204, False), (304, False), (404, True)]
)
def test_status_allows_body_rfc9110_s6_4_1(status: int, allowed: bool) -> None:
    assert status_allows_body(status) is allowed
