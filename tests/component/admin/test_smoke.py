import pytest

from tests.component.admin.conftest import UI

pytestmark = pytest.mark.asyncio


async def test_smoke(ui: UI) -> None:
    await ui.as_admin()
    for path in (
        "/admin/",
        "/admin/fleet",
        "/admin/creators",
        "/admin/creators/alice",
        f"/admin/manifests/{ui.seeded.bob_manifest}",
        "/admin/periods",
        "/admin/reconciliation",
        "/admin/log?request_id=req-alice",
        "/admin/audit",
    ):
        r = await ui.client.get(path)
        assert r.status == 200, (path, await r.text())
    await ui.as_creator("alice")
    for path in (
        "/portal/",
        "/portal/statements",
        "/portal/receipts?request_id=req-alice",
        f"/portal/manifests/{ui.seeded.alice_manifests[0]}",
    ):
        r = await ui.client.get(path)
        assert r.status == 200, (path, await r.text())
