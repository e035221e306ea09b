"""Rendering helpers shared by the admin and portal views: templates with the session's
context, pagination, money and byte formatting, and the security headers of every page."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import aiohttp_jinja2
from aiohttp import web

from admin.context import admin_context
from admin.store import Session

T = TypeVar("T")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
CSP = (
    "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)
MESSAGES = {
    "revoked-key": "The key was revoked.",
    "added-key": "The key was added.",
    "revoked-manifest": "The manifest version was revoked.",
    "password-set": "The creator's portal password was set.",
    "closed": "The period was closed.",
}


@web.middleware
async def security_headers(request: web.Request, handler: Handler) -> web.StreamResponse:
    """CSP, no framing, no sniffing and no caching on the UI's pages."""
    response = await handler(request)
    if request.path.startswith(("/admin/", "/portal/")) or request.path in ("/admin", "/portal"):
        response.headers.setdefault("Content-Security-Policy", CSP)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        if not request.path.startswith("/admin/static/"):
            response.headers.setdefault("Cache-Control", "no-store")
    return response


def render(
    request: web.Request,
    template: str,
    session: Session | None,
    *,
    status: int = 200,
    **context: Any,
) -> web.Response:
    context.update(
        user=None if session is None else session.user,
        csrf="" if session is None else session.csrf_token,
        path=request.path,
        message=MESSAGES.get(request.query.get("msg", "")),
    )
    return aiohttp_jinja2.render_template(template, request, context, status=status)


@dataclass(frozen=True, slots=True)
class Page:
    number: int  # 1-based
    size: int
    total: int

    @property
    def offset(self) -> int:
        return (self.number - 1) * self.size

    @property
    def count(self) -> int:
        return max(1, -(-self.total // self.size))

    @property
    def has_prev(self) -> bool:
        return self.number > 1

    @property
    def has_next(self) -> bool:
        return self.number < self.count

    def slice(self, items: Sequence[T]) -> Sequence[T]:
        return items[self.offset : self.offset + self.size]


def page_of(request: web.Request, total: int) -> Page:
    """The ``?page=`` of a list of ``total`` items (clamped into range)."""
    text = request.query.get("page", "1")
    number = int(text) if text.isdigit() and len(text) < 9 else 1
    size = admin_context(request).settings.page_size
    page = Page(1, size, total)
    return Page(min(max(number, 1), page.count), size, total)


def format_micros(amount_micros: int, currency: str = "") -> str:
    """Integer micro-units as a decimal with 6 places (no float): 1234567 -> 1.234567."""
    sign = "-" if amount_micros < 0 else ""
    whole, frac = divmod(abs(amount_micros), 1_000_000)
    text = f"{sign}{whole:,}.{frac:06d}"
    return f"{text} {currency}".strip()


def format_bytes(size_bytes: int) -> str:
    value = float(size_bytes)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(value) < 1000 or unit == "TB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{size_bytes} B"
