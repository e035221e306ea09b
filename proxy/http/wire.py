"""HTTP/1.1 response heads on the wire (RFC 9112 §4, §5): pure byte formatting."""

from __future__ import annotations

from http import HTTPStatus

from proxy.http.fields import Headers


def reason_phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""


def serialize_status_line(status: int, reason: str) -> bytes:
    return f"HTTP/1.1 {status} {reason}\r\n".encode("latin-1")


def serialize_fields(headers: Headers) -> bytes:
    """Field lines, each CRLF-terminated; values are never allowed to carry CR or LF, so a header
    received from an origin can't split the response we send."""
    return "".join(f"{name}: {_single_line(value)}\r\n" for name, value in headers).encode(
        "latin-1", "replace"
    )


def _single_line(value: str) -> str:
    if "\r" in value or "\n" in value:
        return value.replace("\r", " ").replace("\n", " ")
    return value


def status_allows_body(status: int) -> bool:
    """RFC 9110 §6.4.1: 1xx, 204 and 304 responses carry no content."""
    return not (status < 200 or status in (204, 304))
