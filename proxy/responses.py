"""Response heads the proxy writes: from a stored response (200 or 304), for a forwarded origin
response, and for its own errors. Pure byte building; the handler decides which."""

from __future__ import annotations

from dataclasses import dataclass

from proxy.cache.entry import StoredResponse
from proxy.http.fields import Headers
from proxy.http.wire import reason_phrase, serialize_fields, serialize_status_line

# RFC 9110 §15.4.5: the fields a 304 carries from the response it stands for.
NOT_MODIFIED_FIELDS = frozenset(
    {"cache-control", "content-location", "date", "etag", "expires", "vary"}
)


@dataclass(frozen=True, slots=True)
class Trailer:
    """Per-response fields every answer carries, rendered once per response."""

    cache_status: str
    x_cache: str
    request_id: str
    keep_alive: bool
    http10: bool

    def render(self) -> bytes:
        connection = (
            b"Connection: keep-alive\r\n"
            if self.keep_alive and self.http10
            else b""
            if self.keep_alive
            else b"Connection: close\r\n"
        )
        return (
            (
                f"Cache-Status: {self.cache_status}\r\nX-Cache-Status: {self.x_cache}\r\n"
                f"X-Request-ID: {self.request_id}\r\n"
            ).encode("latin-1")
            + connection
            + b"\r\n"
        )


def stored_head(stored: StoredResponse, age_s: float, trailer: Trailer) -> bytes:
    return stored.head_bytes + b"Age: %d\r\n" % int(age_s) + trailer.render()


def not_modified_head(stored: StoredResponse, age_s: float, via: str, trailer: Trailer) -> bytes:
    fields = [(n, v) for n, v in stored.headers if n.lower() in NOT_MODIFIED_FIELDS]
    fields.append(("Via", via))
    return (
        serialize_status_line(304, "Not Modified")
        + serialize_fields(fields)
        + b"Age: %d\r\n" % int(age_s)
        + trailer.render()
    )


def forwarded_head(status: int, reason: str, headers: Headers, trailer: Trailer) -> bytes:
    return (
        serialize_status_line(status, reason or reason_phrase(status))
        + serialize_fields(headers)
        + trailer.render()
    )


def error_response(status: int, message: str, via: str, date: str, trailer: Trailer) -> bytes:
    body = (message + "\n").encode("utf-8")
    fields = [
        ("Date", date),
        ("Content-Type", "text/plain; charset=utf-8"),
        ("Content-Length", str(len(body))),
        ("Cache-Control", "no-store"),
        ("Via", via),
    ]
    return forwarded_head(status, reason_phrase(status), fields, trailer) + body
