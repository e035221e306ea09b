"""The edge side of the registry (proxy/registry_client.py) against a fake coordinator that
serves a change feed from a list, and against a local manifests folder."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import web
from aiohttp.test_utils import TestServer

from provenance.keys import format_verifier_key
from provenance.manifests import format_signed_manifest, manifest_id, sign_manifest
from provenance.records import format_timestamp
from proxy.records.emit import Attribution
from proxy.registry_client import (
    ManifestFolderError,
    ManifestIndex,
    RegistryPoller,
    index_folder,
)
from tests.component.billing.fleet import FakeClock, signing_key
from tests.component.billing.test_registry import CID_A, CID_B, make_manifest

MakeServer = Callable[..., Awaitable[TestServer]]
M1, M2 = "sha256:" + "1" * 64, "sha256:" + "2" * 64
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def published(seq: int, mid: str, items: list[tuple[str, str]], sup: str | None = None) -> Any:
    return {
        "seq": seq, "kind": "manifest-published", "at": format_timestamp(T0),
        "manifest_id": mid, "creator": "alice", "lineage": mid, "version": 1,
        "supersedes": sup, "items": [{"content_id": c, "path": p} for c, p in items],
    }  # fmt: skip


def revoked(seq: int, mid: str, cids: list[str], effective: datetime) -> Any:
    return {
        "seq": seq, "kind": "manifest-revoked", "at": format_timestamp(T0), "manifest_id": mid,
        "creator": "alice", "reason": "r", "revoked_at": format_timestamp(T0),
        "effective_at": format_timestamp(effective), "content_ids": cids,
    }  # fmt: skip


class FakeCoordinator:
    def __init__(self) -> None:
        self.events: list[Any] = []
        self.requests: list[tuple[int, int]] = []

    async def changes(self, request: web.Request) -> web.Response:
        cursor, limit = int(request.query["cursor"]), int(request.query["limit"])
        self.requests.append((cursor, limit))
        page = [e for e in self.events if e["seq"] > cursor][:limit]
        next_cursor = page[-1]["seq"] if page else cursor
        return web.json_response(
            {"events": page, "cursor": next_cursor, "more": len(page) == limit}
        )


@pytest_asyncio.fixture
async def fake(aiohttp_server: MakeServer) -> tuple[FakeCoordinator, str]:
    coordinator = FakeCoordinator()
    app = web.Application()
    app.router.add_get("/v1/registry/changes", coordinator.changes)
    server = await aiohttp_server(app)
    return coordinator, str(server.make_url(""))


@pytest.mark.asyncio
async def test_poller_follows_the_feed_pages_and_supersedes(
    fake: tuple[FakeCoordinator, str], tmp_path: Path
) -> None:
    coordinator, url = fake
    coordinator.events = [
        published(1, M1, [(CID_A, "/a")]),
        published(2, M2, [(CID_B, "/b")], sup=M1),
    ]
    async with aiohttp.ClientSession() as session:
        poller = RegistryPoller(session, url, tmp_path, _never, page_limit=1)
        assert await poller.poll_once() == 2
    assert coordinator.requests[:2] == [(0, 1), (1, 1)]
    assert poller.index.lookup_path("h", "/a") is None
    assert poller.index.lookup_path("h", "/b") == Attribution(CID_B, "alice", M2)
    assert poller.cursor == 2


@pytest.mark.asyncio
async def test_cursor_and_index_survive_a_restart(
    fake: tuple[FakeCoordinator, str], tmp_path: Path
) -> None:
    coordinator, url = fake
    coordinator.events = [published(1, M1, [(CID_A, "/a")])]
    async with aiohttp.ClientSession() as session:
        await RegistryPoller(session, url, tmp_path, _never).poll_once()
        coordinator.requests.clear()
        again = RegistryPoller(session, url, tmp_path, _never)
        assert again.index.lookup_content(CID_A) == Attribution(CID_A, "alice", M1)
        await again.poll_once()
    assert coordinator.requests == [(1, 500)]


@pytest.mark.asyncio
async def test_revocation_purges_only_after_the_grace_window(
    fake: tuple[FakeCoordinator, str], tmp_path: Path
) -> None:
    coordinator, url = fake
    clock = FakeClock(T0)
    coordinator.events = [
        published(1, M1, [(CID_A, "/a")]),
        revoked(2, M1, [CID_A], T0 + timedelta(seconds=30)),
    ]
    purged: list[list[str]] = []

    async def on_revoked(content_ids: list[str]) -> None:
        purged.append(content_ids)

    async with aiohttp.ClientSession() as session:
        poller = RegistryPoller(session, url, tmp_path, on_revoked, clock=clock)
        await poller.poll_once()
        assert purged == [] and poller.index.lookup_path("h", "/a") is not None
        clock.advance(30)
        await poller.poll_once()
    assert purged == [[CID_A]]
    assert poller.index.lookup_path("h", "/a") is None


@pytest.mark.asyncio
async def test_a_failed_purge_stays_pending(
    fake: tuple[FakeCoordinator, str], tmp_path: Path
) -> None:
    coordinator, url = fake
    coordinator.events = [published(1, M1, [(CID_A, "/a")]), revoked(2, M1, [CID_A], T0)]
    calls: list[list[str]] = []

    async def flaky(content_ids: list[str]) -> None:
        calls.append(content_ids)
        if len(calls) == 1:
            raise RuntimeError("purge failed")

    async with aiohttp.ClientSession() as session:
        poller = RegistryPoller(session, url, tmp_path, flaky, clock=FakeClock(T0))
        await poller.poll_once()
        assert poller.index.lookup_path("h", "/a") is not None
        await poller.poll_once()
    assert calls == [[CID_A], [CID_A]] and poller.index.lookup_path("h", "/a") is None


def test_index_keeps_the_first_claim_and_reclaims_on_removal() -> None:
    index = ManifestIndex()
    index.add(M1, "alice", [(CID_A, "/x")], None)
    index.add(M2, "bob", [(CID_B, "/x")], None)
    assert index.lookup_path("h", "/x") == Attribution(CID_A, "alice", M1)
    assert index.remove(M1) == [CID_A]
    assert index.lookup_path("h", "/x") == Attribution(CID_B, "bob", M2)


def test_local_folder_is_verified_with_its_creator_keys(tmp_path: Path) -> None:
    alice = signing_key("alice")
    v1 = make_manifest(alice)
    v2 = make_manifest(alice, version=2, supersedes=manifest_id(v1), items=((CID_B, "/b"),))
    (tmp_path / "alice.pub").write_text(format_verifier_key(alice.verifier) + "\n")
    (tmp_path / "v2.json").write_bytes(format_signed_manifest(sign_manifest(v2, alice)))
    (tmp_path / "v1.json").write_bytes(format_signed_manifest(sign_manifest(v1, alice)))
    index = ManifestIndex()
    index_folder(index, tmp_path)
    assert index.lookup_path("h", "/b") == Attribution(CID_B, "alice", manifest_id(v2))
    assert index.lookup_path("h", "/a.mp4") is None and len(index) == 1


def test_local_folder_refuses_a_manifest_no_key_there_verifies(tmp_path: Path) -> None:
    mallory = signing_key("alice", "k2")
    (tmp_path / "alice.pub").write_text(format_verifier_key(signing_key("alice").verifier))
    body = format_signed_manifest(sign_manifest(make_manifest(mallory), mallory))
    (tmp_path / "m.json").write_bytes(body)
    with pytest.raises(ManifestFolderError, match=r"m\.json"):
        index_folder(ManifestIndex(), tmp_path)


async def _never(content_ids: list[str]) -> None:
    raise AssertionError(f"unexpected revocation of {content_ids}")
