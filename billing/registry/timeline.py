"""Pure rules of the registry: which version is active when, and what a new version may claim.

A version is active over ``[published_at, end)`` where ``end`` is the earlier of the instant its
successor was published (``superseded_at``) and its revocation's ``effective_at`` (revoked_at +
grace). Timestamps are RFC 3339 UTC millisecond strings of one fixed width, so string order is
time order. When several versions (of different lineages or creators) claim one content id at
the same instant, the one published first wins (ties by manifest id): the first claim stands
until it ends. No I/O, no clock: ``ts`` is always passed in.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol, TypeVar

from billing.registry.errors import SupersedesError, VersionExistsError
from billing.store.base import StoredManifest
from provenance.manifests import Manifest


class Span(Protocol):
    @property
    def manifest_id(self) -> str: ...
    @property
    def published_at(self) -> str: ...
    @property
    def superseded_at(self) -> str | None: ...
    @property
    def effective_at(self) -> str | None: ...


S = TypeVar("S", bound=Span)


def is_active_at(span: Span, ts: str) -> bool:
    """True if the version was published at or before ``ts`` and had not ended by then."""
    if ts < span.published_at:
        return False
    if span.superseded_at is not None and ts >= span.superseded_at:
        return False
    return span.effective_at is None or ts < span.effective_at


def choose_active(spans: Iterable[S], ts: str) -> S | None:
    """The version active at ``ts`` that was published first (ties by id), or None."""
    active = [span for span in spans if is_active_at(span, ts)]
    if not active:
        return None
    return min(active, key=lambda span: (span.published_at, span.manifest_id))


def lineage_for(manifest: Manifest, manifest_id: str, predecessor: StoredManifest | None) -> str:
    """The lineage a new version joins (a version 1 starts its own, named by its id); raises
    SupersedesError or VersionExistsError when it may not be published after ``predecessor``
    (the stored manifest its ``supersedes`` names, or None if there is none)."""
    if manifest.supersedes is None:
        return manifest_id
    if predecessor is None:
        raise SupersedesError("'supersedes' names no published manifest")
    if predecessor.creator != manifest.creator:
        raise SupersedesError("'supersedes' names another creator's manifest")
    if manifest.version != predecessor.version + 1:
        raise SupersedesError(
            f"version {manifest.version} cannot follow version {predecessor.version}"
        )
    if predecessor.superseded_at is not None:
        raise VersionExistsError(
            f"version {manifest.version} of this lineage already exists (different manifest)"
        )
    return predecessor.lineage
