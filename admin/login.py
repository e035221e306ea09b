"""Login and logout pages, one pair per area (admin, creator portal)."""

from __future__ import annotations

import math

from aiohttp import web

from admin.auth import (
    LOGIN_CSRF_COOKIE,
    SESSION_COOKIE,
    Area,
    check_csrf,
    current_session,
    end_session,
    is_login_csrf_ok,
    login_retry_after_s,
    new_login_csrf,
    record_audit,
    require_session,
    set_cookie,
    try_login,
)
from admin.context import admin_context
from admin.pages import Handler, render
from admin.store import ADMIN


def _login_form(request: web.Request, area: Area, error: str | None, status: int) -> web.Response:
    token = new_login_csrf(request)
    response = render(
        request, "login.html", None, status=status, area=area, login_csrf=token, error=error
    )
    set_cookie(request, response, LOGIN_CSRF_COOKIE, token, max_age_s=3600)
    return response


def login_handlers(area: Area) -> tuple[Handler, Handler]:
    async def show(request: web.Request) -> web.StreamResponse:
        session = await current_session(request)
        if session is not None and session.user.role == area.role:
            raise web.HTTPFound(area.prefix)
        return _login_form(request, area, None, 200)

    async def submit(request: web.Request) -> web.StreamResponse:
        form = await request.post()
        username, password, token = (str(form.get(k, "")) for k in ("username", "password", "csrf"))
        if not is_login_csrf_ok(request, token):
            return _login_form(request, area, "The form expired; please try again.", 403)
        wait_s = login_retry_after_s(request, username)
        if wait_s > 0:
            response = _login_form(
                request, area, f"Too many failed attempts; try again in {math.ceil(wait_s)} s.", 429
            )
            response.headers["Retry-After"] = str(math.ceil(wait_s))
            return response
        value = await try_login(request, area, username, password)
        if value is None:
            return _login_form(request, area, "Wrong username or password.", 401)
        if area.role == ADMIN:
            await record_audit(request, username, "login", "admin UI")
        response = web.Response(status=302, headers={"Location": area.prefix})
        set_cookie(
            request,
            response,
            SESSION_COOKIE,
            value,
            max_age_s=admin_context(request).settings.session_ttl_s,
        )
        response.del_cookie(LOGIN_CSRF_COOKIE, path="/")
        return response

    return show, submit


def logout_handler(area: Area) -> Handler:
    async def logout(request: web.Request) -> web.StreamResponse:
        session = await require_session(request, area)
        check_csrf(session, await request.post())
        await end_session(request)
        if area.role == ADMIN:
            await record_audit(request, session.user.username, "logout", "admin UI")
        response = web.Response(status=302, headers={"Location": area.login_path})
        response.del_cookie(SESSION_COOKIE, path="/")
        return response

    return logout
