"""The edge's view of the manifest registry: an in-memory index fed by the coordinator's change
feed or by a local folder of signed manifests (docs/design/registry.md).

``ManifestIndex.lookup_path`` is a dict lookup (it runs on every response). ``RegistryPoller``
follows ``GET /v1/registry/changes`` with a cursor; the cursor and the index are saved together
(one JSON file in the cache dir, written atomically) after each page, so a restart resumes where
it stopped without replaying the feed and without an empty index. A revocation is applied when
its ``effective_at`` passes (the grace window): the manifest leaves the index and
``on_revoked(content_ids)`` is called (the lead wires it to purge); if the callback raises, the
revocation stays pending and is retried at the next poll.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp

from provenance.errors import CachetError, FormatError
from provenance.keys import KeyRing, VerifierKey, parse_verifier_key
from provenance.manifests import SignedManifest, manifest_id, parse_manifest, verify_manifest
from provenance.records import format_timestamp
from proxy.records.emit import Attribution

STATE_FILE = "registry-state.json"
_log = logging.getLogger("cachet.proxy.registry")
OnRevoked = Callable[[list[str]], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class _Entry:
    creator: str
    items: tuple[tuple[str, str], ...]  # (content_id, path)


class ManifestIndex:
    """path -> Attribution and content id -> Attribution over the active manifests. Paths are
    origin paths; ``host`` is accepted for when one proxy fronts several origins (not yet: one
    origin per proxy, so every host shares the index). A path claimed by two manifests keeps
    the first claim, as the coordinator's ``choose_active`` does."""

    def __init__(self) -> None:
        self._manifests: dict[str, _Entry] = {}
        self._by_path: dict[str, Attribution] = {}
        self._by_content: dict[str, Attribution] = {}
        self._pending: dict[str, tuple[str, tuple[str, ...]]] = {}  # id -> (effective, cids)

    def lookup_path(self, host: str, path: str) -> Attribution | None:
        return self._by_path.get(path)

    def lookup_content(self, content_id: str) -> Attribution | None:
        return self._by_content.get(content_id)

    def __len__(self) -> int:
        return len(self._manifests)

    def add(
        self, mid: str, creator: str, items: Iterable[tuple[str, str]], supersedes: str | None
    ) -> None:
        """Index a published version (replacing the one it supersedes)."""
        if supersedes is not None:
            self.remove(supersedes)
        entry = _Entry(creator, tuple(items))
        self._manifests[mid] = entry
        for content_id, path in entry.items:
            attribution = Attribution(content_id, creator, mid)
            self._by_path.setdefault(path, attribution)
            self._by_content.setdefault(content_id, attribution)

    def remove(self, mid: str) -> list[str]:
        """Drop a version from the index; its content ids."""
        entry = self._manifests.pop(mid, None)
        if entry is None:
            return []
        for content_id, path in entry.items:
            if (a := self._by_path.get(path)) is not None and a.manifest_id == mid:
                del self._by_path[path]
            if (a := self._by_content.get(content_id)) is not None and a.manifest_id == mid:
                del self._by_content[content_id]
        self._reclaim(entry)
        return [content_id for content_id, _ in entry.items]

    def _reclaim(self, freed: _Entry) -> None:
        paths = {path for _, path in freed.items}
        cids = {cid for cid, _ in freed.items}
        for mid, entry in self._manifests.items():
            for content_id, path in entry.items:
                if path in paths:
                    self._by_path.setdefault(path, Attribution(content_id, entry.creator, mid))
                if content_id in cids:
                    attribution = Attribution(content_id, entry.creator, mid)
                    self._by_content.setdefault(content_id, attribution)

    def apply_event(self, event: Mapping[str, Any]) -> None:
        """Apply one change-feed event (unknown kinds are ignored: newer coordinators)."""
        kind = event.get("kind")
        if kind == "manifest-published":
            items = [(i["content_id"], i["path"]) for i in event["items"]]
            self.add(event["manifest_id"], event["creator"], items, event.get("supersedes"))
        elif kind == "manifest-revoked":
            cids = tuple(event.get("content_ids", ()))
            self._pending[event["manifest_id"]] = (event["effective_at"], cids)

    def due_revocations(self, now: str) -> dict[str, list[str]]:
        """Revocations whose grace has passed: manifest id -> content ids (not yet applied)."""
        return {mid: sorted(set(cids)) for mid, (at, cids) in self._pending.items() if at <= now}

    def complete_revocation(self, mid: str) -> None:
        self._pending.pop(mid, None)
        self.remove(mid)

    def to_obj(self) -> dict[str, Any]:
        return {
            "manifests": {
                mid: {"creator": e.creator, "items": [list(i) for i in e.items]}
                for mid, e in self._manifests.items()
            },
            "pending": {mid: [at, list(cids)] for mid, (at, cids) in self._pending.items()},
        }

    @classmethod
    def from_obj(cls, obj: Mapping[str, Any]) -> ManifestIndex:
        index = cls()
        for mid, entry in obj["manifests"].items():
            index.add(mid, entry["creator"], [(c, p) for c, p in entry["items"]], None)
        for mid, (at, cids) in obj["pending"].items():
            index._pending[mid] = (at, tuple(cids))
        return index


class ManifestFolderError(CachetError):
    """A file of the local manifests folder is malformed or does not verify."""


def load_manifest_folder(folder: Path) -> list[SignedManifest]:
    """Signed manifests (``*.json``) of ``folder``, each verified with the creator verifier keys
    (``*.pub``) of the same folder; ManifestFolderError naming the first bad file."""
    ring = KeyRing(_read_key(path) for path in sorted(folder.glob("*.pub")))
    manifests = []
    for path in sorted(folder.glob("*.json")):
        try:
            signed = parse_manifest(path.read_bytes())
            verify_manifest(signed, ring)
        except (CachetError, OSError) as exc:
            raise ManifestFolderError(f"manifest file {path}: {exc}") from None
        manifests.append(signed)
    return sorted(manifests, key=lambda s: s.manifest.version)


def _read_key(path: Path) -> VerifierKey:
    try:
        return parse_verifier_key(path.read_text("utf-8"))
    except (FormatError, OSError, UnicodeDecodeError) as exc:
        raise ManifestFolderError(f"creator key file {path}: {exc}") from None


def index_folder(index: ManifestIndex, folder: Path) -> None:
    """Add every verified manifest of ``folder`` to ``index`` (versions in order)."""
    for signed in load_manifest_folder(folder):
        m = signed.manifest
        items = [(i.content_id, i.path) for i in m.items]
        index.add(manifest_id(m), m.creator, items, m.supersedes)


def _utc_now() -> datetime:
    return datetime.now(UTC)


class RegistryPoller:
    """Follows the coordinator's change feed into a ManifestIndex (see module docstring)."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        coordinator_url: str,
        state_dir: Path,
        on_revoked: OnRevoked,
        *,
        interval_s: float = 10.0,
        page_limit: int = 500,
        clock: Callable[[], datetime] = _utc_now,
    ) -> None:
        self.session, self.url = session, coordinator_url.rstrip("/")
        self.state_path = state_dir / STATE_FILE
        self.on_revoked, self.interval_s, self.page_limit = on_revoked, interval_s, page_limit
        self.clock = clock
        self.cursor, self.index = self._load_state()
        self._task: asyncio.Task[None] | None = None

    def _load_state(self) -> tuple[int, ManifestIndex]:
        try:
            obj = json.loads(self.state_path.read_bytes())
            return int(obj["cursor"]), ManifestIndex.from_obj(obj["index"])
        except FileNotFoundError:
            return 0, ManifestIndex()
        except (ValueError, KeyError, TypeError) as exc:  # corrupt: rebuild from the feed
            _log.warning(
                "registry state %s unreadable (%s); replaying the feed", self.state_path, exc
            )
            return 0, ManifestIndex()

    def _save_state(self) -> None:
        data = json.dumps({"cursor": self.cursor, "index": self.index.to_obj()}).encode()
        tmp = self.state_path.with_name(STATE_FILE + ".tmp")
        with open(tmp, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, self.state_path)

    async def _fetch_page(self) -> dict[str, Any]:
        params = {"cursor": str(self.cursor), "limit": str(self.page_limit)}
        url = self.url + "/v1/registry/changes"
        async with self.session.get(url, params=params) as response:
            response.raise_for_status()
            page: dict[str, Any] = await response.json()
        return page

    async def poll_once(self) -> int:
        """Apply every new event (page by page), then due revocations; the events applied."""
        applied = 0
        while True:
            page = await self._fetch_page()
            for event in page["events"]:
                self.index.apply_event(event)
            applied += len(page["events"])
            self.cursor = max(self.cursor, int(page["cursor"]))
            self._save_state()
            if not page.get("more") or not page["events"]:
                break
        await self.apply_due_revocations()
        return applied

    async def apply_due_revocations(self) -> None:
        due = self.index.due_revocations(format_timestamp(self.clock()))
        for mid, content_ids in due.items():
            try:
                await self.on_revoked(content_ids)
            except Exception:  # the purge failed: keep it pending, retry at the next poll
                _log.exception("on_revoked failed for %s; will retry", mid)
                continue
            self.index.complete_revocation(mid)
            self._save_state()

    async def run(self) -> None:
        """Poll forever; a failed poll is logged and retried after the interval."""
        while True:
            try:
                await self.poll_once()
            except (
                TimeoutError,
                OSError,
                aiohttp.ClientError,
                ValueError,
                KeyError,
                TypeError,
            ) as exc:
                _log.warning("registry poll failed: %s", exc)
            await asyncio.sleep(self.interval_s)

    def start(self) -> None:
        self._task = asyncio.create_task(self.run(), name="registry-poller")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
