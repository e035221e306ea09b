"""Every page answers 200 to the right user and 302 (anonymous) or 403 (wrong role) otherwise;
a creator never sees another creator's data (issue 7)."""

from __future__ import annotations

import pytest

from tests.component.admin.conftest import UI

pytestmark = pytest.mark.asyncio

PERIOD = "day-2026-11-26T00:00:00Z"


def admin_pages(ui: UI) -> list[str]:
    s = ui.seeded
    return [
        "/admin/",
        "/admin/dashboard.json",
        "/admin/fleet",
        "/admin/creators",
        "/admin/creators?q=ali",
        "/admin/creators/alice",
        f"/admin/manifests/{s.bob_manifest}",
        f"/admin/manifests/{s.alice_manifests[0]}",
        "/admin/periods",
        "/admin/reconciliation",
        f"/admin/reconciliation?period={PERIOD}",
        "/admin/log",
        f"/admin/log?request_id={s.alice_request}",
        "/admin/audit",
        f"/admin/periods/{PERIOD}",
        f"/admin/periods/{PERIOD}/settlement.csv",
        f"/admin/periods/{PERIOD}/settlement.json",
        f"/admin/receipts/{s.alice_request}.json",
    ]


def portal_pages(ui: UI) -> list[str]:
    s = ui.seeded
    return [
        "/portal/",
        "/portal/statements",
        "/portal/receipts",
        f"/portal/receipts?request_id={s.alice_request}",
        f"/portal/manifests/{s.alice_manifests[1]}",
        f"/portal/receipts/{s.alice_request}.json",
    ]


async def _status(ui: UI, path: str) -> int:
    return (await ui.client.get(path, allow_redirects=False)).status


async def test_every_admin_page_is_200_for_an_admin(ui: UI) -> None:
    await ui.as_admin()
    for path in admin_pages(ui):
        assert await _status(ui, path) == 200, path


async def test_every_portal_page_is_200_for_its_creator(ui: UI) -> None:
    await ui.as_creator("alice")
    for path in portal_pages(ui):
        assert await _status(ui, path) == 200, path


async def test_anonymous_is_sent_to_the_login_page(ui: UI) -> None:
    ui.anonymous()
    for path in admin_pages(ui):
        response = await ui.client.get(path, allow_redirects=False)
        assert (response.status, response.headers["Location"]) == (302, "/admin/login"), path
    for path in portal_pages(ui):
        response = await ui.client.get(path, allow_redirects=False)
        assert (response.status, response.headers["Location"]) == (302, "/portal/login"), path


async def test_a_creator_gets_403_on_every_admin_page_and_action(ui: UI) -> None:
    await ui.as_creator("alice")
    for path in admin_pages(ui):
        assert await _status(ui, path) == 403, path
    csrf = await ui.csrf("/portal/")  # a valid token of the creator's own session
    edge, key_id = ui.seeded.edge.name, ui.seeded.edge.key.verifier.key_id_hex
    for path in (
        "/admin/fleet/enrolment-tokens",
        f"/admin/fleet/{edge}/keys/{key_id}/revoke",
        f"/admin/manifests/{ui.seeded.bob_manifest}/revoke",
        "/admin/periods/close",
        "/admin/creators/bob/password",
    ):
        response = await ui.client.post(
            path,
            data={"csrf": csrf, "reason": "x", "grace_s": "0", "password": "p" * 12},
            allow_redirects=False,
        )
        assert response.status == 403, path
    assert all(k.revoked_at is None for k in await ui.ctx.coordinator.store.edge_keys(edge))


async def test_an_admin_gets_403_in_the_portal(ui: UI) -> None:
    await ui.as_admin()
    for path in portal_pages(ui):
        assert await _status(ui, path) == 403, path


async def test_a_creator_cannot_see_another_creators_data(ui: UI) -> None:
    await ui.as_creator("alice")
    s = ui.seeded
    assert await _status(ui, f"/portal/manifests/{s.bob_manifest}") == 404
    assert await _status(ui, f"/portal/receipts/{s.bob_request}.json") == 404
    page = await (await ui.client.get(f"/portal/receipts?request_id={s.bob_request}")).text()
    assert "not-available" in page and '"bob"' not in page and "req-bob" in page
    assert "verified</span>" not in page
    home = await (await ui.client.get("/portal/")).text()
    assert s.alice_manifests[1][:23] in home and s.bob_manifest[:23] not in home
    own = await (await ui.client.get(f"/portal/receipts?request_id={s.alice_request}")).text()
    assert "badge ok" in own and "verified" in own


async def test_the_dashboard_shows_the_coordinators_traffic(ui: UI) -> None:
    """Two seeded batches of edge-1 (3 + 4 records, all hits, 1,001..1,007 bytes) on the page
    and in ``/admin/dashboard.json``, on SQLite and on PostgreSQL (issue 9)."""
    await ui.as_admin()
    board = await (await ui.client.get("/admin/dashboard.json")).json()
    assert board["totals"] == {
        "requests": 7,
        "hits": 7,
        "batches": 2,
        "records": 7,
        "edges": 1,
        "rejected": 0,
        "log_size": 2,
    }
    assert [(t["requests"], t["bytes_served"], t["origin_bytes"]) for t in board["traffic"]] == [
        (7, sum(range(1001, 1008)), 0)
    ]
    assert [(b["batches"], b["records"]) for b in board["batches"]] == [(2, 7)]
    assert [(c["creator"], c["requests"]) for c in board["top_creators"]] == [
        ("alice", 1),
        ("bob", 1),
    ]
    page = await (await ui.client.get("/admin/")).text()
    assert "<span>7</span> requests" in page and "<span>1</span> edges" in page


async def test_unknown_ids_are_404_not_500(ui: UI) -> None:
    await ui.as_admin()
    assert await _status(ui, "/admin/creators/nobody") == 404
    assert await _status(ui, "/admin/manifests/sha256:" + "f" * 64) == 404
    assert await _status(ui, "/admin/periods/day-2026-11-26T05:00:00Z") == 404
    assert await _status(ui, f"/admin/periods/{PERIOD}/statements/alice") == 404
    assert await _status(ui, "/admin/receipts/no-such-request.json") == 404


async def test_empty_billing_pages_say_so(ui: UI) -> None:
    await ui.as_admin()
    assert "No billing periods yet" in await (await ui.client.get("/admin/periods")).text()
    assert "nothing to reconcile" in await (await ui.client.get("/admin/reconciliation")).text()
    overview = await (await ui.client.get("/admin/")).text()
    assert "no closed billing periods yet" in overview
    csrf = await ui.csrf("/admin/periods")
    response = await ui.client.post("/admin/periods/close", data={"csrf": csrf, "period": PERIOD})
    # Billing runs on the coordinator: a period with no traffic closes with no statements.
    assert "No statements for this period." in await response.text()
    assert "No billing periods yet" not in await (await ui.client.get("/admin/periods")).text()
    await ui.as_creator("alice")
    assert "No statements yet" in await (await ui.client.get("/portal/statements")).text()


async def test_lists_are_paginated(ui: UI) -> None:
    await ui.as_admin()
    for i in range(7):
        await ui.ctx.registry.add_creator(f"extra-{i}", [_verifier(f"extra-{i}")])
    first = await (await ui.client.get("/admin/creators")).text()
    assert "Page 1 of 2" in first and 'rel="next"' in first
    second = await (await ui.client.get("/admin/creators?page=2")).text()
    assert "Page 2 of 2" in second and 'rel="prev"' in second
    assert "extra-6" not in first or "extra-6" not in second


def _verifier(name: str) -> str:
    from provenance.keys import format_verifier_key
    from tests.component.billing.fleet import signing_key

    return format_verifier_key(signing_key(name).verifier)
