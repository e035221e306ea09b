"""``Registry``: the manifest registry's service functions (HTTP handlers, the admin UI and
billing call these, never the SQL). Stable for billing:

- ``manifest_active_at(content_id, ts) -> ActiveManifest | None``: the version active for that
  content id at a record's timestamp (``billing.registry.timeline`` rules).
- ``manifest(manifest_id) -> StoredManifest`` and ``signed_manifest(manifest_id)`` for the
  terms (immutable: a caller may cache them by id forever).

Who may act: ``Actor.admin()`` or ``Actor.creator(account)`` (from ``authenticate``). A creator
publishes and revokes only its own manifests; the admin may act for any creator.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from billing.errors import NotFoundError, RevokedKeyError, UnauthorizedError
from billing.registry.errors import ForbiddenError, UnknownCreatorError
from billing.registry.events import make_event, publish_events, revoke_event
from billing.registry.timeline import choose_active, is_active_at, lineage_for
from billing.store.base import CreatorKey, RegistryEvent, Store, StoredManifest
from billing.tokens import hash_token
from provenance.content_id import is_content_id
from provenance.errors import FormatError
from provenance.keys import KeyRing, parse_verifier_key
from provenance.manifests import (
    ManifestItem,
    SignedManifest,
    format_signed_manifest,
    manifest_id,
    parse_manifest,
    verify_manifest,
)
from provenance.records import format_timestamp, is_name, is_timestamp

CREATOR_TOKEN_PREFIX = "cachet-creator-"  # noqa: S105 - a prefix, not a secret
MAX_GRACE_S = 90 * 24 * 3600
MAX_REASON_CHARS = 500
MAX_FEED_LIMIT = 1000


@dataclass(frozen=True, slots=True)
class Actor:
    """Who is acting: the admin (``account`` None) or one creator."""

    account: str | None

    @property
    def is_admin(self) -> bool:
        return self.account is None

    def require(self, creator: str) -> None:
        """ForbiddenError unless this actor may act for ``creator``."""
        if self.account is not None and self.account != creator:
            raise ForbiddenError(f"a token of {self.account} cannot act for {creator}")


@dataclass(frozen=True, slots=True)
class ActiveManifest:
    """A content id's attribution: which version names it, whose, and the item."""

    manifest_id: str
    creator: str
    version: int
    item: ManifestItem


@dataclass(frozen=True, slots=True)
class CreatorInfo:
    account: str
    created_at: str
    keys: list[CreatorKey]


def _creator_key(account: str, verifier_text: object, now: str) -> CreatorKey:
    if not isinstance(verifier_text, str):
        raise FormatError("a verifier key must be a C2SP verifier key string")
    key = parse_verifier_key(verifier_text)
    if key.name != account:
        raise FormatError("the verifier key's name must be the creator account")
    return CreatorKey(account, key.key_id_hex, verifier_text.strip(), now, None)


def _check_account(account: object) -> str:
    if not is_name(account):
        raise FormatError("creator account must match [A-Za-z0-9][A-Za-z0-9._-]{0,63}")
    assert isinstance(account, str)
    return account


def _active(m: StoredManifest, item: ManifestItem) -> ActiveManifest:
    return ActiveManifest(m.manifest_id, m.creator, m.version, item)


class Registry:
    def __init__(self, store: Store, clock: Callable[[], datetime]) -> None:
        self.store, self.clock = store, clock

    def _now(self) -> str:
        return format_timestamp(self.clock())

    async def authenticate(self, token: str | None) -> Actor:
        """The actor of a bearer token (creator token or admin token); UnauthorizedError."""
        if token is None:
            raise UnauthorizedError("bearer token missing")
        if token.startswith(CREATOR_TOKEN_PREFIX):
            account = await self.store.creator_of_token(hash_token(token))
            if account is not None:
                return Actor(account)
        elif await self.store.has_admin_token(hash_token(token)):
            return Actor(None)
        raise UnauthorizedError("token unknown")

    # -- creators ------------------------------------------------------------------------------
    async def add_creator(self, account: object, verifier_texts: object) -> list[CreatorKey]:
        name = _check_account(account)
        if not isinstance(verifier_texts, list) or not verifier_texts:
            raise FormatError("verifier_keys must be a non-empty list of C2SP verifier keys")
        now = self._now()
        keys = [_creator_key(name, text, now) for text in verifier_texts[:16]]
        event = make_event(
            "creator-added", now, account=name, verifier_keys=[k.verifier for k in keys]
        )
        await self.store.add_creator(name, keys, now, [event])
        return keys

    async def add_creator_key(self, account: str, verifier_text: object) -> CreatorKey:
        key = _creator_key(_check_account(account), verifier_text, self._now())
        event = make_event(
            "creator-key-added", key.added_at,
            account=account, key_id=key.key_id, verifier_key=key.verifier,
        )  # fmt: skip
        await self.store.add_creator_key(key, [event])
        return key

    async def revoke_creator_key(self, account: str, key_id: str) -> None:
        now = self._now()
        event = make_event("creator-key-revoked", now, account=account, key_id=key_id)
        await self.store.revoke_creator_key(account, key_id, now, [event])

    async def list_creators(self) -> list[CreatorInfo]:
        return [
            CreatorInfo(account, created, await self.store.creator_keys(account))
            for account, created in await self.store.list_creators()
        ]

    async def issue_creator_token(self, account: str) -> str:
        """A new API token for ``account`` (shown once, stored as its SHA-256)."""
        token = CREATOR_TOKEN_PREFIX + secrets.token_bytes(32).hex()
        await self.store.add_creator_token(hash_token(token), account, self._now())
        return token

    # -- manifests -----------------------------------------------------------------------------
    async def _verify(self, signed: SignedManifest) -> None:
        creator = signed.manifest.creator
        keys = await self.store.creator_keys(creator)
        if not keys:
            raise UnknownCreatorError(f"no creator account {creator}")
        ring = KeyRing(parse_verifier_key(k.verifier) for k in keys if k.revoked_at is None)
        if any(k.key_id == signed.manifest.key_id and k.revoked_at for k in keys):
            raise RevokedKeyError(f"creator key {creator}+{signed.manifest.key_id} is revoked")
        verify_manifest(signed, ring)

    async def publish(self, body: bytes, actor: Actor) -> tuple[StoredManifest, bool]:
        """Verify and store a signed manifest; (stored, True) if new, (existing, False) if the
        same id was already stored. Raises the registry's errors with their reasons."""
        signed = parse_manifest(body)
        m = signed.manifest
        actor.require(m.creator)
        await self._verify(signed)
        new_id = manifest_id(m)
        existing = await self.store.find_manifest(new_id)
        if existing is not None:
            return existing, False
        predecessor = None if m.supersedes is None else await self.store.find_manifest(m.supersedes)
        lineage = lineage_for(m, new_id, predecessor)
        stored = StoredManifest(
            new_id, m.creator, m.key_id, lineage, m.version, m.supersedes,
            format_signed_manifest(signed).decode(), self._now(),
        )  # fmt: skip
        await self.store.insert_manifest(stored, m.items, publish_events(stored, m.items))
        return stored, True

    async def revoke(
        self, manifest_id_: str, reason: object, grace_s: object, actor: Actor
    ) -> tuple[StoredManifest, bool]:
        """Revoke a version from now + ``grace_s``; (manifest, False) if already revoked."""
        if not isinstance(reason, str) or not 0 < len(reason) <= MAX_REASON_CHARS:
            raise FormatError(f"reason must be 1..{MAX_REASON_CHARS} characters")
        if type(grace_s) is not int or not 0 <= grace_s <= MAX_GRACE_S:
            raise FormatError(f"grace_s must be an integer in 0..{MAX_GRACE_S}")
        stored = await self.manifest(manifest_id_)
        actor.require(stored.creator)
        now = self.clock()
        revoked_at = format_timestamp(now)
        effective = format_timestamp(now + timedelta(seconds=grace_s))
        items = parse_manifest(stored.signed_json.encode()).manifest.items
        event = revoke_event(stored, items, reason, revoked_at, effective)
        changed = await self.store.revoke_manifest(
            stored.manifest_id, revoked_at, effective, reason, [event]
        )
        return await self.manifest(manifest_id_), changed

    # -- lookups -------------------------------------------------------------------------------
    async def manifest(self, manifest_id_: str) -> StoredManifest:
        """The stored version with that id; NotFoundError."""
        if not is_content_id(manifest_id_):
            raise FormatError("a manifest id is sha256:<64 lowercase hex>")
        stored = await self.store.find_manifest(manifest_id_)
        if stored is None:
            raise NotFoundError("no such manifest")
        return stored

    async def signed_manifest(self, manifest_id_: str) -> SignedManifest:
        return parse_manifest((await self.manifest(manifest_id_)).signed_json.encode())

    async def manifest_active_at(self, content_id: str, ts: str) -> ActiveManifest | None:
        """The version naming ``content_id`` active at ``ts`` (RFC 3339 UTC ms), or None."""
        if not is_content_id(content_id) or not is_timestamp(ts):
            raise FormatError("want a content id and an RFC 3339 UTC millisecond timestamp")
        pairs = await self.store.manifests_naming(content_id=content_id)
        chosen = choose_active((m for m, _ in pairs), ts)
        return None if chosen is None else _active(chosen, dict(pairs)[chosen])

    async def active_now(
        self, *, content_id: str | None = None, path: str | None = None
    ) -> list[ActiveManifest]:
        """Every version active now naming that content id (or path), first published first."""
        if content_id is not None and not is_content_id(content_id):
            raise FormatError("a content id is sha256:<64 lowercase hex>")
        if path is not None and not 0 < len(path) <= 2048:
            raise FormatError("path must be 1..2048 characters")
        now = self._now()
        pairs = await self.store.manifests_naming(content_id=content_id, path=path)
        return [_active(m, item) for m, item in pairs if is_active_at(m, now)]

    async def changes(self, cursor: int, limit: int) -> list[RegistryEvent]:
        """Events with seq > ``cursor``, in seq order, at most ``limit`` (1..1000)."""
        if not 1 <= limit <= MAX_FEED_LIMIT:
            raise FormatError(f"limit must be 1..{MAX_FEED_LIMIT}")
        return await self.store.registry_events(cursor, limit)
