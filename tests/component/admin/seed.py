"""Seed data for the admin UI tests (component and browser): an admin user, two creators with
portal passwords and manifests, one enrolled edge whose batches carry both creators' records, and
a checkpoint so receipts verify."""

from __future__ import annotations

from dataclasses import dataclass

from admin.context import AdminContext
from admin.passwords import hash_password
from admin.store import ADMIN, UiUser
from admin.views_registry import set_creator_password
from billing.registry.service import Actor
from provenance.keys import SigningKey, format_verifier_key
from provenance.manifests import Manifest, ManifestItem, PayoutTerms, manifest_id, sign_manifest
from provenance.manifests import format_signed_manifest as format_manifest
from provenance.records import format_timestamp
from tests.component.billing.fleet import Edge, body_of, signing_key

ADMIN_USER = "root"
PASSWORD = "correct horse battery"
CID_ALICE = "sha256:" + "a" * 64
CID_ALICE_2 = "sha256:" + "c" * 64
CID_BOB = "sha256:" + "b" * 64


@dataclass
class Seeded:
    edge: Edge
    alice_manifests: list[str]
    bob_manifest: str
    alice_request: str
    bob_request: str


def _manifest(
    key: SigningKey,
    items: tuple[tuple[str, str], ...],
    version: int = 1,
    supersedes: str | None = None,
) -> Manifest:
    return Manifest(
        creator=key.name,
        key_id=key.key_id.hex(),
        items=tuple(ManifestItem(cid, path, 2_000_000, "video/mp4") for cid, path in items),
        license="CC-BY-4.0",
        training_use="allowed",
        payout_terms=PayoutTerms(10, 20000),
        created="2026-01-01T00:00:00.000Z",
        version=version,
        supersedes=supersedes,
    )


async def _publish(ctx: AdminContext, m: Manifest, key: SigningKey) -> str:
    await ctx.registry.publish(format_manifest(sign_manifest(m, key)), Actor(None))
    return manifest_id(m)


async def seed(ctx: AdminContext) -> Seeded:
    now = format_timestamp(ctx.clock())
    root_hash = hash_password(PASSWORD, bytes(range(16)), 10)
    await ctx.store.add_user(UiUser(ADMIN_USER, ADMIN, None, root_hash, now))
    alice, bob = signing_key("alice"), signing_key("bob")
    for key in (alice, bob):
        await ctx.registry.add_creator(key.name, [format_verifier_key(key.verifier)])
        await set_creator_password(ctx, key.name, PASSWORD)
    first = await _publish(ctx, _manifest(alice, ((CID_ALICE, "/alice/a.mp4"),)), alice)
    items = ((CID_ALICE, "/alice/a.mp4"), (CID_ALICE_2, "/alice/b.mp4"))
    second = await _publish(ctx, _manifest(alice, items, 2, first), alice)
    bob_id = await _publish(ctx, _manifest(bob, ((CID_BOB, "/bob/b.mp4"),)), bob)
    edge = Edge("edge-1", signing_key("edge-1"))
    issued = await ctx.coordinator.issue_enrolment_token()
    await ctx.coordinator.enrol(issued.token, edge.name, edge.verifier)
    records = [
        edge.record("req-alice", content_id=CID_ALICE, creator="alice", manifest=second),
        edge.record("req-bob", content_id=CID_BOB, creator="bob", manifest=bob_id),
        edge.record("req-plain"),
    ]
    await ctx.coordinator.ingestor.ingest(body_of(edge.seal(records)), None)
    await ctx.coordinator.ingestor.ingest(body_of(edge.seal(count=4)), None)
    await ctx.coordinator.sequencer.flush()
    return Seeded(edge, [first, second], bob_id, "req-alice", "req-bob")
