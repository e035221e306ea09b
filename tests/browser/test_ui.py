"""The admin UI and the creator portal in headless Chromium (issue 7): log in, open every page,
revoke a key, close a period, verify a receipt, log out; a creator can't reach another creator's
data or any admin page. Each page's screenshot is kept in tests/browser/artifacts/."""

from __future__ import annotations

import re

import pytest
from playwright.async_api import expect

from tests.browser.conftest import Site
from tests.component.admin.seed import ADMIN_USER, PASSWORD

pytestmark = pytest.mark.asyncio(loop_scope="function")
PERIOD = "day-2026-11-26T00:00:00Z"


async def _login(site: Site, area: str, username: str) -> None:
    page = site.page
    await page.goto(site.url(f"/{area}/login"))
    await page.get_by_label("Username").fill(username)
    await page.get_by_label("Password").fill(PASSWORD)
    await page.get_by_role("button", name="Log in").click()
    await expect(page.get_by_role("button", name="Log out")).to_be_visible()


async def test_admin_opens_every_page_revokes_a_key_closes_a_period_verifies_a_receipt(
    site: Site,
) -> None:
    page = site.page
    await _login(site, "admin", ADMIN_USER)
    await expect(page.get_by_role("heading", name="Overview")).to_be_visible()
    await expect(page.locator("svg.chart").first).to_be_visible()
    await site.shot("admin-overview")
    for label, heading in (
        ("Fleet", "Fleet"),
        ("Creators", "Creators"),
        ("Periods", "Billing periods"),
        ("Reconciliation", "Reconciliation"),
        ("Log", "Merkle log"),
        ("Audit", "Audit trail"),
    ):
        await page.get_by_role("navigation", name="Main").get_by_role("link", name=label).click()
        await expect(page.get_by_role("heading", level=1)).to_contain_text(heading)
        await site.shot(f"admin-{label.lower()}")

    # fleet: revoke the edge's key; the page then shows it revoked
    await page.goto(site.url("/admin/fleet"))
    key_id = site.seeded.edge.key.verifier.key_id_hex
    await page.get_by_role("button", name=f"Revoke key {key_id} of edge-1").click()
    await expect(page.get_by_role("status")).to_have_text("The key was revoked.")
    await expect(page.locator(".badge.bad", has_text="revoked")).to_be_visible()
    await site.shot("admin-fleet-revoked")

    # creators -> alice -> a manifest with its verified signature
    await page.goto(site.url("/admin/creators"))
    await page.get_by_label("Search accounts").fill("ali")
    await page.get_by_role("button", name="Search").click()
    await page.get_by_role("link", name="alice").click()
    await page.get_by_role("link", name=re.compile("sha256:")).last.click()
    await expect(page.locator(".badge.ok", has_text="verified")).to_be_visible()
    await site.shot("admin-manifest")

    # periods: close one, open its statement
    await page.goto(site.url("/admin/periods"))
    await page.get_by_label("Period (kind-start, UTC)").fill(PERIOD)
    await page.get_by_role("button", name="Close period").click()
    await expect(page.get_by_role("status")).to_have_text("The period was closed.")
    await expect(page.get_by_role("heading", level=1)).to_have_text(f"Period {PERIOD}")
    await page.get_by_role("link", name="alice").click()
    await expect(page.locator("dd strong")).to_have_text("1.000000 USD")  # payout after the fee
    await site.shot("admin-statement")
    await page.goto(site.url(f"/admin/reconciliation?period={PERIOD}"))
    await expect(page.get_by_text("sampling: 2; unknown-content: 1")).to_be_visible()
    await site.shot("admin-reconciliation-closed")

    # log: verify a receipt
    await page.goto(site.url("/admin/log"))
    await page.get_by_label("Request id").fill(site.seeded.alice_request)
    await page.get_by_role("button", name="Verify").click()
    await expect(page.locator(".badge.ok", has_text="verified")).to_be_visible()
    await site.shot("admin-receipt")

    # the audit trail shows what was done, by whom
    await page.goto(site.url("/admin/audit"))
    for action in ("revoke-edge-key", "close-period", "login"):
        await expect(page.get_by_role("cell", name=action, exact=True)).to_be_visible()
    await site.shot("admin-audit-after")

    await page.get_by_role("button", name="Log out").click()
    await expect(page.get_by_role("heading", name="Administrator login")).to_be_visible()
    await page.goto(site.url("/admin/fleet"))
    await expect(page).to_have_url(site.url("/admin/login"))


async def test_creator_sees_only_their_own_data(site: Site) -> None:
    page = site.page
    await site.page.goto(site.url("/admin/login"))  # close a period first, as the admin
    await _login(site, "admin", ADMIN_USER)
    await page.goto(site.url("/admin/periods"))
    await page.get_by_label("Period (kind-start, UTC)").fill(PERIOD)
    await page.get_by_role("button", name="Close period").click()
    await page.get_by_role("button", name="Log out").click()

    await _login(site, "portal", "alice")
    await expect(page.get_by_role("heading", name="alice", level=1)).to_be_visible()
    await site.shot("portal-home")
    await page.get_by_role("link", name="Statements").click()
    await page.get_by_role("link", name=PERIOD).click()
    await expect(page.get_by_text("Statement of alice")).to_be_visible()
    await site.shot("portal-statement")
    async with page.expect_download() as download_info:
        await page.get_by_role("link", name="Download CSV").click()
    csv_text = (await (await download_info.value).path()).read_text()
    assert "alice" in csv_text and "bob" not in csv_text

    await page.get_by_role("link", name="Receipts").click()
    await page.get_by_label("Request id (X-Request-ID)").fill(site.seeded.alice_request)
    await page.get_by_role("button", name="Verify").click()
    await expect(page.locator(".badge.ok", has_text="verified")).to_be_visible()
    await site.shot("portal-receipt")
    async with page.expect_download() as receipt_info:
        await page.get_by_role("link", name="Download receipt JSON").click()
    assert '"creator":"alice"' in (await (await receipt_info.value).path()).read_text()

    await page.get_by_label("Request id (X-Request-ID)").fill(site.seeded.bob_request)
    await page.get_by_role("button", name="Verify").click()
    await expect(page.locator(".badge.bad", has_text="failed")).to_be_visible()
    await expect(page.get_by_text("not-available")).to_be_visible()
    response = await page.goto(site.url(f"/portal/manifests/{site.seeded.bob_manifest}"))
    assert response is not None and response.status == 404
    for path in ("/admin/", "/admin/creators/bob", "/admin/audit"):
        response = await page.goto(site.url(path))
        assert response is not None and response.status == 403, path


async def test_keyboard_reaches_the_skip_link_and_the_login_form(site: Site) -> None:
    page = site.page
    await page.goto(site.url("/admin/login"))
    await expect(page.get_by_label("Username")).to_be_focused()  # autofocus
    await page.keyboard.type(ADMIN_USER)
    await page.keyboard.press("Tab")
    await page.keyboard.type(PASSWORD)
    await page.keyboard.press("Enter")
    await expect(page.get_by_role("heading", name="Overview")).to_be_visible()
    await page.keyboard.press("Tab")
    await expect(page.get_by_role("link", name="Skip to content")).to_be_focused()
