"""Response heads the proxy writes: from a stored response (200 or 304), for a forwarded origin
response, and for its own errors. Pure byte building; the handler decides which."""

from __future__ import annotations

from proxy.cache.entry import StoredResponse
from proxy.http.fields import Headers
from proxy.http.wire import reason_phrase, serialize_fields, serialize_status_line

# RFC 9110 §15.4.5: the fields a 304 carries from the response it stands for.
NOT_MODIFIED_FIELDS = frozenset(
    {"cache-control", "content-location", "date", "etag", "expires", "vary"}
)


def render_trailer(
    cache_status: str, x_cache: str, request_id: str, keep_alive: bool, http10: bool
) -> bytes:
    """The per-response fields every answer carries, and the blank line ending the head."""
    if keep_alive:
        connection = "Connection: keep-alive\r\n\r\n" if http10 else "\r\n"
    else:
        connection = "Connection: close\r\n\r\n"
    return (
        f"Cache-Status: {cache_status}\r\nX-Cache-Status: {x_cache}\r\n"
        f"X-Request-ID: {request_id}\r\n{connection}"
    ).encode("latin-1")


def stored_head(stored: StoredResponse, age_s: float, trailer: bytes) -> bytes:
    return stored.head_bytes + b"Age: %d\r\n" % int(age_s) + trailer


def not_modified_head(stored: StoredResponse, age_s: float, via: str, trailer: bytes) -> bytes:
    fields = [(n, v) for n, v in stored.headers if n.lower() in NOT_MODIFIED_FIELDS]
    fields.append(("Via", via))
    return (
        serialize_status_line(304, "Not Modified")
        + serialize_fields(fields)
        + b"Age: %d\r\n" % int(age_s)
        + trailer
    )


def forwarded_head(status: int, reason: str, headers: Headers, trailer: bytes) -> bytes:
    return (
        serialize_status_line(status, reason or reason_phrase(status))
        + serialize_fields(headers)
        + trailer
    )


def error_response(
    status: int, message: str, via: str, date: str, trailer: bytes, retry_after_s: int | None = None
) -> bytes:
    body = (message + "\n").encode("utf-8")
    fields = [
        ("Date", date),
        ("Content-Type", "text/plain; charset=utf-8"),
        ("Content-Length", str(len(body))),
        ("Cache-Control", "no-store"),
        ("Via", via),
    ]
    if retry_after_s is not None:
        fields.append(("Retry-After", str(retry_after_s)))  # RFC 9110 §10.2.3
    return forwarded_head(status, reason_phrase(status), fields, trailer) + body
