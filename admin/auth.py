"""Sessions, CSRF and login for the admin UI and the creator portal.

- A session is a random 32-byte cookie value (``cachet_session``: HttpOnly, SameSite=Strict,
  Path=/, Secure over HTTPS); the database keeps only its SHA-256, with the session's CSRF token.
- Every state-changing form carries ``csrf`` equal to the session's token (compared in constant
  time); the login form, before any session, uses a double-submit cookie.
- Logins are rate-limited per client address and per username (``admin.ratelimit``); unknown
  users cost the same scrypt work as wrong passwords.
- Roles: an ``admin`` user sees ``/admin/``; a ``creator`` user sees only its own account in
  ``/portal/``. Anonymous requests are sent to the login page; the wrong role gets 403.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import secrets
from dataclasses import dataclass
from datetime import timedelta
from functools import cache
from typing import Any

from aiohttp import web
from multidict import MultiDictProxy

from admin.context import admin_context
from admin.passwords import DEFAULT_LOG2_N, hash_password, is_password_match
from admin.store import ADMIN, AuditEntry, Session
from provenance.records import format_timestamp

SESSION_COOKIE = "cachet_session"
_AUDIT_SEQ = itertools.count()  # orders entries made within one clock tick
LOGIN_CSRF_COOKIE = "cachet_login_csrf"


@dataclass(frozen=True, slots=True)
class Area:
    """One of the two logged-in areas: its role, URL prefix and login page."""

    role: str
    prefix: str

    @property
    def login_path(self) -> str:
        return self.prefix + "login"


ADMIN_AREA = Area(ADMIN, "/admin/")
PORTAL_AREA = Area("creator", "/portal/")


@cache
def _dummy_hash() -> str:
    """Checked when the user is unknown, so both failures cost the same scrypt work."""
    return hash_password("not a password", bytes(16), DEFAULT_LOG2_N)


def hash_session(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def _now(request: web.Request) -> str:
    return format_timestamp(admin_context(request).clock())


async def current_session(request: web.Request) -> Session | None:
    value = request.cookies.get(SESSION_COOKIE)
    if not value or len(value) > 128:
        return None
    return await admin_context(request).store.find_session(hash_session(value), _now(request))


async def require_session(request: web.Request, area: Area) -> Session:
    """The session of a user of ``area``'s role; 302 to the login page if anonymous, 403 if
    the user has the other role."""
    session = await current_session(request)
    if session is None:
        raise web.HTTPFound(area.login_path)
    if session.user.role != area.role:
        raise web.HTTPForbidden(text="403: this area is not for your account\n")
    return session


def check_csrf(session: Session, form: MultiDictProxy[Any]) -> None:
    token = form.get("csrf")
    if not isinstance(token, str) or not hmac.compare_digest(token, session.csrf_token):
        raise web.HTTPForbidden(text="403: the form's CSRF token is missing or wrong\n")


async def checked_form(request: web.Request, session: Session) -> dict[str, str]:
    """The POSTed form after its CSRF check, as plain strings."""
    form = await request.post()
    check_csrf(session, form)
    return {k: v for k, v in form.items() if isinstance(v, str)}


def set_cookie(
    request: web.Request,
    response: web.StreamResponse,
    name: str,
    value: str,
    max_age_s: int | None = None,
) -> None:
    response.set_cookie(
        name,
        value,
        max_age=max_age_s,
        path="/",
        httponly=True,
        samesite="Strict",
        secure=request.secure,
    )


def new_login_csrf(request: web.Request) -> str:
    """The login form's CSRF token: reuse the cookie's, or make one (set by the caller)."""
    token = request.cookies.get(LOGIN_CSRF_COOKIE, "")
    return token if 20 <= len(token) <= 64 else secrets.token_urlsafe(24)


def is_login_csrf_ok(request: web.Request, form_token: str) -> bool:
    cookie = request.cookies.get(LOGIN_CSRF_COOKIE, "")
    return bool(cookie) and hmac.compare_digest(cookie, form_token)


def _limit_keys(request: web.Request, username: str) -> tuple[str, str]:
    return (f"ip:{request.remote}", f"user:{username.lower()}")


def _clock_s(request: web.Request) -> float:
    return admin_context(request).clock().timestamp()


def login_retry_after_s(request: web.Request, username: str) -> float:
    limiter = admin_context(request).settings.limiter
    return limiter.retry_after_s(_limit_keys(request, username), _clock_s(request))


async def try_login(request: web.Request, area: Area, username: str, password: str) -> str | None:
    """A new session cookie value if the credentials belong to a user of ``area``, else None
    (the failure is counted for rate limiting)."""
    ctx = admin_context(request)
    keys = _limit_keys(request, username)
    user = await ctx.store.find_user(username) if 0 < len(username) <= 64 else None
    ok = is_password_match(password, user.password_hash if user else _dummy_hash())
    if user is None or not ok or user.role != area.role:
        ctx.settings.limiter.note_failure(keys, _clock_s(request))
        return None
    ctx.settings.limiter.note_success(keys)
    value = secrets.token_urlsafe(32)
    now = ctx.clock()
    expires = now + timedelta(seconds=ctx.settings.session_ttl_s)
    await ctx.store.add_session(
        hash_session(value),
        user.username,
        secrets.token_urlsafe(24),
        format_timestamp(now),
        format_timestamp(expires),
    )
    return value


async def end_session(request: web.Request) -> None:
    value = request.cookies.get(SESSION_COOKIE)
    if value:
        await admin_context(request).store.delete_session(hash_session(value))


async def record_audit(
    request: web.Request, actor: str, action: str, target: str, detail: str = ""
) -> None:
    """Append one entry to the audit trail (who, what, on what, when)."""
    ctx = admin_context(request)
    now = format_timestamp(ctx.clock())
    entry = AuditEntry(
        f"{now}-{next(_AUDIT_SEQ):012d}-{secrets.token_hex(4)}",
        now,
        actor,
        action,
        target,
        detail[:500],
    )
    await ctx.store.add_audit(entry)
