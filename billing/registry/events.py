"""Change-feed events: kinds and payloads (canonical JSON), built from values; no I/O.

Wire form of one event (``GET /v1/registry/changes``): ``{"seq": N, "kind": K, "at": TS,
...payload}``. Kinds and their payload fields:

- ``creator-added``: account, verifier_keys (list of C2SP verifier keys)
- ``creator-key-added``: account, key_id, verifier_key
- ``creator-key-revoked``: account, key_id
- ``manifest-published``: manifest_id, creator, lineage, version, supersedes,
  items (list of {content_id, path})
- ``manifest-superseded``: manifest_id, creator, by (the successor's id)
- ``manifest-revoked``: manifest_id, creator, reason, revoked_at, effective_at, content_ids
"""

from __future__ import annotations

from collections.abc import Sequence

from billing.store.base import NewEvent, StoredManifest
from provenance.canonical_json import canonicalize
from provenance.manifests import ManifestItem

EVENT_KINDS = (
    "creator-added",
    "creator-key-added",
    "creator-key-revoked",
    "manifest-published",
    "manifest-superseded",
    "manifest-revoked",
)


def make_event(kind: str, at: str, **payload: object) -> NewEvent:
    if kind not in EVENT_KINDS:
        raise ValueError(f"unknown event kind {kind!r}")
    return NewEvent(kind, at, canonicalize(payload).decode())


def publish_events(m: StoredManifest, items: Sequence[ManifestItem]) -> list[NewEvent]:
    """``manifest-superseded`` for the predecessor (if any), then ``manifest-published``."""
    events = []
    if m.supersedes is not None:
        events.append(
            make_event(
                "manifest-superseded",
                m.published_at,
                manifest_id=m.supersedes,
                creator=m.creator,
                by=m.manifest_id,
            )
        )
    events.append(
        make_event(
            "manifest-published",
            m.published_at,
            manifest_id=m.manifest_id,
            creator=m.creator,
            lineage=m.lineage,
            version=m.version,
            supersedes=m.supersedes,
            items=[{"content_id": i.content_id, "path": i.path} for i in items],
        )
    )
    return events


def revoke_event(
    m: StoredManifest, items: Sequence[ManifestItem], reason: str, revoked_at: str, effective: str
) -> NewEvent:
    return make_event(
        "manifest-revoked",
        revoked_at,
        manifest_id=m.manifest_id,
        creator=m.creator,
        reason=reason,
        revoked_at=revoked_at,
        effective_at=effective,
        content_ids=sorted({i.content_id for i in items}),
    )
