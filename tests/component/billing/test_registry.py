"""The manifest registry over HTTP: creators, publish rules, revocation with grace, lookups,
the change feed. Each refusal is checked for its reason token."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from billing.registry.service import Registry
from provenance.keys import SigningKey, format_verifier_key
from provenance.manifests import (
    Manifest,
    ManifestItem,
    PayoutTerms,
    format_signed_manifest,
    manifest_id,
    sign_manifest,
)
from tests.component.billing.conftest import Harness
from tests.component.billing.fleet import signing_key

pytestmark = pytest.mark.asyncio

CID_A = "sha256:" + "a" * 64
CID_B = "sha256:" + "b" * 64


def make_manifest(
    key: SigningKey,
    *,
    version: int = 1,
    supersedes: str | None = None,
    items: tuple[tuple[str, str], ...] = ((CID_A, "/a.mp4"),),
    per_hit_micros: int = 10,
) -> Manifest:
    return Manifest(
        creator=key.name,
        key_id=key.key_id.hex(),
        items=tuple(ManifestItem(cid, path, 100, "video/mp4") for cid, path in items),
        license="CC-BY-4.0",
        training_use="allowed",
        payout_terms=PayoutTerms(per_hit_micros, 20000),
        created="2026-01-01T00:00:00.000Z",
        version=version,
        supersedes=supersedes,
    )


def signed_body(m: Manifest, key: SigningKey) -> bytes:
    return format_signed_manifest(sign_manifest(m, key))


async def add_creator(h: Harness, key: SigningKey) -> None:
    body = {"account": key.name, "verifier_keys": [format_verifier_key(key.verifier)]}
    response = await h.client.post("/v1/admin/creators", json=body, headers=h.admin)
    assert response.status == 201, await response.text()


async def publish(
    h: Harness, body: bytes, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, Any]]:
    response = await h.client.post("/v1/manifests", data=body, headers=headers or h.admin)
    return response.status, await response.json()


async def changes(h: Harness, cursor: int = 0, limit: int = 100) -> dict[str, Any]:
    response = await h.client.get(f"/v1/registry/changes?cursor={cursor}&limit={limit}")
    assert response.status == 200
    result: dict[str, Any] = await response.json()
    return result


async def test_publish_then_lookup_by_id_content_and_path(harness: Harness) -> None:
    alice = signing_key("alice")
    await add_creator(harness, alice)
    m = make_manifest(alice)
    status, body = await publish(harness, signed_body(m, alice))
    assert (status, body["status"], body["manifest_id"]) == (201, "stored", manifest_id(m))
    got = await (await harness.client.get(f"/v1/manifests/{manifest_id(m)}")).json()
    assert got["creator"] == "alice" and got["lineage"] == manifest_id(m)
    by_cid = await (await harness.client.get(f"/v1/content/{CID_A}")).json()
    assert [x["manifest_id"] for x in by_cid["manifests"]] == [manifest_id(m)]
    by_path = await (await harness.client.get("/v1/content", params={"path": "/a.mp4"})).json()
    assert by_path["manifests"][0]["item"]["content_id"] == CID_A


async def test_same_manifest_twice_is_idempotent(harness: Harness) -> None:
    alice = signing_key("alice")
    await add_creator(harness, alice)
    body = signed_body(make_manifest(alice), alice)
    assert (await publish(harness, body))[0] == 201
    status, result = await publish(harness, body)
    assert (status, result["detail"]) == (200, "already stored")
    assert len((await changes(harness))["events"]) == 2  # creator-added, manifest-published


@pytest.mark.parametrize(
    ("case", "status", "reason"),
    [
        ("malformed-json", 400, "malformed"),
        ("bad-content-id", 400, "malformed"),
        ("unknown-creator", 403, "unknown-creator"),
        ("wrong-key", 403, "unknown-key"),
        ("bad-signature", 422, "bad-signature"),
    ],
)
async def test_bad_publications_are_refused_with_a_reason(
    harness: Harness, case: str, status: int, reason: str
) -> None:
    alice = signing_key("alice")
    await add_creator(harness, alice)
    good = signed_body(make_manifest(alice), alice)
    other = signing_key("alice", "k2")  # a key named alice but never registered
    bodies = {
        "malformed-json": b'{"v": 1,',
        "bad-content-id": good.replace(CID_A.encode(), b"sha256:XYZ"),
        "unknown-creator": signed_body(make_manifest(signing_key("bob")), signing_key("bob")),
        "wrong-key": signed_body(make_manifest(other), other),
        "bad-signature": good.replace(b"CC-BY-4.0", b"CC-BY-4.1"),
    }
    got = await publish(harness, bodies[case])
    assert got == (status, {"error": reason})


async def test_versions_supersede_the_latest_and_are_immutable(harness: Harness) -> None:
    alice = signing_key("alice")
    await add_creator(harness, alice)
    v1 = make_manifest(alice)
    await publish(harness, signed_body(v1, alice))
    v2 = make_manifest(alice, version=2, supersedes=manifest_id(v1), per_hit_micros=20)
    assert (await publish(harness, signed_body(v2, alice)))[0] == 201
    rival = make_manifest(alice, version=2, supersedes=manifest_id(v1), per_hit_micros=30)
    assert await publish(harness, signed_body(rival, alice)) == (409, {"error": "version-exists"})
    skip = make_manifest(alice, version=3, supersedes=manifest_id(v1))
    assert await publish(harness, signed_body(skip, alice)) == (
        422,
        {"error": "supersedes-mismatch"},
    )
    ghost = make_manifest(alice, version=2, supersedes="sha256:" + "0" * 64)
    assert (await publish(harness, signed_body(ghost, alice)))[1] == {
        "error": "supersedes-mismatch"
    }
    old = await (await harness.client.get(f"/v1/manifests/{manifest_id(v1)}")).json()
    assert old["superseded_at"] is not None
    by_cid = await (await harness.client.get(f"/v1/content/{CID_A}")).json()
    assert [x["version"] for x in by_cid["manifests"]] == [2]


async def test_creator_token_publishes_only_its_own(harness: Harness) -> None:
    alice, bob = signing_key("alice"), signing_key("bob")
    await add_creator(harness, alice)
    await add_creator(harness, bob)
    response = await harness.client.post("/v1/admin/creators/alice/tokens", headers=harness.admin)
    token = (await response.json())["token"]
    auth = {"Authorization": f"Bearer {token}"}
    assert (await publish(harness, signed_body(make_manifest(alice), alice), auth))[0] == 201
    bob_body = signed_body(make_manifest(bob), bob)
    assert await publish(harness, bob_body, auth) == (403, {"error": "forbidden"})
    nobody = {"Authorization": "Bearer cachet-creator-00"}
    assert await publish(harness, bob_body, nobody) == (401, {"error": "unauthorized"})


async def test_revoked_creator_key_cannot_publish(harness: Harness) -> None:
    alice = signing_key("alice")
    await add_creator(harness, alice)
    path = f"/v1/admin/creators/alice/keys/{alice.key_id.hex()}"
    assert (await harness.client.delete(path, headers=harness.admin)).status == 204
    assert await publish(harness, signed_body(make_manifest(alice), alice)) == (
        403,
        {"error": "revoked-key"},
    )
    k2 = signing_key("alice", "k2")
    body = {"verifier_key": format_verifier_key(k2.verifier)}
    response = await harness.client.post(
        "/v1/admin/creators/alice/keys", json=body, headers=harness.admin
    )
    assert response.status == 201
    assert (await publish(harness, signed_body(make_manifest(k2), k2)))[0] == 201
    listed = await (await harness.client.get("/v1/admin/creators", headers=harness.admin)).json()
    assert len(listed["creators"][0]["keys"]) == 2


async def test_revocation_takes_effect_after_the_grace_window(harness: Harness) -> None:
    alice = signing_key("alice")
    await add_creator(harness, alice)
    m = make_manifest(alice)
    await publish(harness, signed_body(m, alice))
    mid = manifest_id(m)
    response = await harness.client.post(
        f"/v1/manifests/{mid}/revoke", json={"reason": "dmca", "grace_s": 60}, headers=harness.admin
    )
    body = await response.json()
    assert (response.status, body["status"]) == (200, "revoked")
    assert body["effective_at"] > body["revoked_at"]
    assert len((await (await harness.client.get(f"/v1/content/{CID_A}")).json())["manifests"]) == 1
    harness.clock.advance(60)
    assert (await (await harness.client.get(f"/v1/content/{CID_A}")).json())["manifests"] == []
    again = await harness.client.post(
        f"/v1/manifests/{mid}/revoke", json={"reason": "x", "grace_s": 0}, headers=harness.admin
    )
    assert (await again.json())["status"] == "already revoked"
    bad = await harness.client.post(
        f"/v1/manifests/{mid}/revoke", json={"reason": "x", "grace_s": -1}, headers=harness.admin
    )
    assert (bad.status, await bad.json()) == (400, {"error": "malformed"})


async def test_manifest_active_at_follows_supersedes_and_revocation(harness: Harness) -> None:
    alice = signing_key("alice")
    await add_creator(harness, alice)
    registry = Registry(harness.coordinator.store, harness.clock)
    v1 = make_manifest(alice)
    await publish(harness, signed_body(v1, alice))
    t1 = (await registry.manifest(manifest_id(v1))).published_at
    harness.clock.advance(10)
    v2 = make_manifest(alice, version=2, supersedes=manifest_id(v1), per_hit_micros=20)
    await publish(harness, signed_body(v2, alice))
    t2 = (await registry.manifest(manifest_id(v2))).published_at
    harness.clock.advance(10)
    await registry.revoke(
        manifest_id(v2), "gone", 5, await registry.authenticate(harness.admin_token)
    )
    end = (await registry.manifest(manifest_id(v2))).effective_at
    assert end is not None
    before = "2000-01-01T00:00:00.000Z"
    assert await registry.manifest_active_at(CID_A, before) is None
    at_t1 = await registry.manifest_active_at(CID_A, t1)
    assert at_t1 is not None and at_t1.manifest_id == manifest_id(v1)
    at_t2 = await registry.manifest_active_at(CID_A, t2)
    assert at_t2 is not None and (at_t2.manifest_id, at_t2.creator) == (manifest_id(v2), "alice")
    assert at_t2.item.path == "/a.mp4"
    assert await registry.manifest_active_at(CID_A, end) is None
    assert await registry.manifest_active_at(CID_B, t2) is None


async def test_change_feed_is_ordered_and_resumes_from_a_cursor(harness: Harness) -> None:
    alice = signing_key("alice")
    await add_creator(harness, alice)
    v1 = make_manifest(alice)
    await publish(harness, signed_body(v1, alice))
    v2 = make_manifest(alice, version=2, supersedes=manifest_id(v1), items=((CID_B, "/b"),))
    await publish(harness, signed_body(v2, alice))
    await harness.client.post(
        f"/v1/manifests/{manifest_id(v2)}/revoke",
        json={"reason": "r", "grace_s": 0},
        headers=harness.admin,
    )
    everything = await changes(harness)
    kinds = [e["kind"] for e in everything["events"]]
    assert kinds == [
        "creator-added",
        "manifest-published",
        "manifest-superseded",
        "manifest-published",
        "manifest-revoked",
    ]
    seqs = [e["seq"] for e in everything["events"]]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    assert everything["events"][-1]["content_ids"] == [CID_B]
    first = await changes(harness, 0, 2)
    assert (len(first["events"]), first["more"]) == (2, True)
    rest = await changes(harness, first["cursor"], 100)
    assert first["events"] + rest["events"] == everything["events"]
    assert (await changes(harness, everything["cursor"]))["events"] == []
    bad = await harness.client.get("/v1/registry/changes?cursor=-1")
    assert bad.status == 400


async def test_duplicate_creator_is_a_conflict(harness: Harness) -> None:
    alice = signing_key("alice")
    await add_creator(harness, alice)
    body = {"account": "alice", "verifier_keys": [format_verifier_key(alice.verifier)]}
    response = await harness.client.post("/v1/admin/creators", json=body, headers=harness.admin)
    assert (response.status, await response.json()) == (409, {"error": "conflict"})
    wrong_name = {"account": "carol", "verifier_keys": [format_verifier_key(alice.verifier)]}
    response = await harness.client.post(
        "/v1/admin/creators", json=wrong_name, headers=harness.admin
    )
    assert response.status == 400


async def test_racing_rival_versions_one_wins_the_other_is_refused(harness: Harness) -> None:
    alice = signing_key("alice")
    await add_creator(harness, alice)
    v1 = make_manifest(alice)
    await publish(harness, signed_body(v1, alice))
    rivals = [
        signed_body(
            make_manifest(alice, version=2, supersedes=manifest_id(v1), per_hit_micros=n), alice
        )
        for n in (20, 30)
    ]
    results = await asyncio.gather(*(publish(harness, body) for body in rivals))
    assert sorted(status for status, _ in results) == [201, 409]
    assert {"error": "version-exists"} in [body for _, body in results]
