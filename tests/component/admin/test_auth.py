"""Login, sessions, CSRF and rate limiting of the admin UI and the creator portal (issue 7)."""

from __future__ import annotations

import pytest

from admin.auth import SESSION_COOKIE, hash_session
from tests.component.admin.conftest import UI, csrf_of
from tests.component.admin.seed import ADMIN_USER, PASSWORD

pytestmark = pytest.mark.asyncio


async def test_login_sets_an_httponly_samesite_strict_session_cookie(ui: UI) -> None:
    ui.anonymous()
    page = await ui.client.get("/admin/login")
    form = {"username": ADMIN_USER, "password": PASSWORD, "csrf": csrf_of(await page.text())}
    response = await ui.client.post("/admin/login", data=form, allow_redirects=False)
    assert response.status == 302 and response.headers["Location"] == "/admin/"
    cookie = response.cookies[SESSION_COOKIE]
    assert cookie["httponly"] is True and cookie["samesite"] == "Strict" and cookie["path"] == "/"
    stored = await ui.ctx.store.find_session(hash_session(cookie.value), "2000-01-01T00:00:00.000Z")
    assert stored is not None and stored.user.username == ADMIN_USER
    assert cookie.value not in str(stored)  # only the hash is stored


async def test_wrong_password_unknown_user_and_wrong_role_are_refused_alike(ui: UI) -> None:
    assert await ui.login("admin", ADMIN_USER, "wrong password!") == 401
    assert await ui.login("admin", "nobody-here", PASSWORD) == 401
    assert await ui.login("admin", "alice", PASSWORD) == 401  # a creator is not an admin
    assert await ui.login("portal", ADMIN_USER, PASSWORD) == 401  # nor an admin a creator
    assert await ui.login("portal", "alice", PASSWORD) == 302


async def test_login_without_the_csrf_cookie_is_refused(ui: UI) -> None:
    ui.anonymous()
    form = {"username": ADMIN_USER, "password": PASSWORD, "csrf": "x" * 32}
    response = await ui.client.post("/admin/login", data=form, allow_redirects=False)
    assert response.status == 403


async def test_login_is_rate_limited_after_five_failures_then_recovers(ui: UI) -> None:
    for _ in range(5):
        assert await ui.login("admin", ADMIN_USER, "wrong password!") == 401
    assert await ui.login("admin", ADMIN_USER, PASSWORD) == 429  # even the right password
    ui.clock.advance(301)
    assert await ui.login("admin", ADMIN_USER, PASSWORD) == 302


async def test_rate_limit_answers_retry_after(ui: UI) -> None:
    for _ in range(5):
        await ui.login("portal", "bob", "wrong password!")
    ui.anonymous()
    page = await ui.client.get("/portal/login")
    form = {"username": "bob", "password": PASSWORD, "csrf": csrf_of(await page.text())}
    response = await ui.client.post("/portal/login", data=form, allow_redirects=False)
    assert response.status == 429
    assert 0 < int(response.headers["Retry-After"]) <= 300
    assert "Too many failed attempts" in await response.text()


async def test_a_post_without_or_with_a_wrong_csrf_token_is_refused(ui: UI) -> None:
    await ui.as_admin()
    for data in ({}, {"csrf": "not-the-token"}):
        response = await ui.client.post("/admin/fleet/enrolment-tokens", data=data)
        assert response.status == 403
    edge, key_id = ui.seeded.edge.name, ui.seeded.edge.key.verifier.key_id_hex
    response = await ui.client.post(f"/admin/fleet/{edge}/keys/{key_id}/revoke", data={})
    assert response.status == 403
    keys = await ui.ctx.coordinator.store.edge_keys(edge)
    assert all(k.revoked_at is None for k in keys)  # nothing happened
    assert await ui.ctx.store.count_audit() == 1  # only the login


async def test_logout_ends_the_session_server_side(ui: UI) -> None:
    await ui.as_admin()
    value = ui.client.session.cookie_jar.filter_cookies(ui.client.make_url("/"))[SESSION_COOKIE]
    csrf = await ui.csrf("/admin/")
    response = await ui.client.post("/admin/logout", data={"csrf": csrf}, allow_redirects=False)
    assert response.status == 302 and response.headers["Location"] == "/admin/login"
    replay = await ui.client.get(
        "/admin/", headers={"Cookie": f"{SESSION_COOKIE}={value.value}"}, allow_redirects=False
    )
    assert replay.status == 302  # the old cookie no longer works
    entries = await ui.ctx.store.list_audit(0, 10)
    assert [e.action for e in entries] == ["logout", "login"]


async def test_sessions_expire(ui: UI) -> None:
    await ui.as_admin()
    assert (await ui.client.get("/admin/", allow_redirects=False)).status == 200
    ui.clock.advance(12 * 3600 + 1)
    assert (await ui.client.get("/admin/", allow_redirects=False)).status == 302


async def test_pages_carry_security_headers(ui: UI) -> None:
    await ui.as_admin()
    response = await ui.client.get("/admin/")
    assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Cache-Control"] == "no-store"
