"""Purge on the admin listener: ``POST /_cachet/purge`` with a bearer token (docs/purge.md).

Targets: exact URLs, URL prefixes, surrogate keys (``Surrogate-Key`` / ``Cache-Tag``) and
content ids. Modes: ``hard`` removes the URLs from memory and disk; ``soft`` marks every
variant stale (``StoredResponse.stale_marked``): it is revalidated before it is served fresh
again, and still serves stale-if-error and stale-while-revalidate meanwhile.

`parse_purge_request` and `check_token` are pure; `PurgeService` is the shell over the store.
Every purge is counted and logged with who asked: the peer address and a token id (the first
hex digits of the token's SHA-256), never the token.
"""

from __future__ import annotations

import bisect
import hashlib
import hmac
import json
import logging
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

from proxy.cache.keys import primary_key
from proxy.cache.purge_marks import PurgeMark
from proxy.cache.store import ResponseStore
from proxy.metrics import ProxyStats

log = logging.getLogger("cachet.purge")

MAX_PURGE_TARGETS = 1000  # per request, all kinds together
MAX_TARGET_CHARS = 8192
MAX_BODY_BYTES = 1024 * 1024
KINDS = ("urls", "prefixes", "surrogate_keys", "content_ids")
_URL = re.compile(r"(https?)://([^/?#\s]+)([^#\s]*)", re.IGNORECASE)
_CONTENT_ID = re.compile(r"sha256:[0-9a-f]{64}")

Mode = Literal["hard", "soft"]


class PurgeFormatError(ValueError):
    """The purge body is not what docs/purge.md describes (answered 400 with the message)."""


@dataclass(frozen=True, slots=True)
class PurgeRequest:
    mode: Mode
    urls: tuple[str, ...] = ()  # cache keys
    prefixes: tuple[str, ...] = ()  # cache-key prefixes
    surrogate_keys: tuple[str, ...] = ()
    content_ids: tuple[str, ...] = ()

    def kinds(self) -> list[str]:
        return [kind for kind in KINDS if getattr(self, kind)]


def token_id(token: str) -> str:
    """What the log says about a token: enough to tell tokens apart, useless to an attacker."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()[:12]


def check_token(authorization: str | None, token: str) -> bool:
    """``Authorization: Bearer <token>`` (RFC 6750 §2.1), compared in constant time."""
    if authorization is None:
        return False
    scheme, _, offered = authorization.strip().partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(offered.strip().encode("utf-8"), token.encode("utf-8"))


def parse_purge_request(body: bytes) -> PurgeRequest:
    """The JSON body ``{"urls": [...], "prefixes": [...], "surrogate_keys": [...],
    "content_ids": [...], "mode": "hard"|"soft"}``: at least one target, at most
    MAX_PURGE_TARGETS. Raises PurgeFormatError and nothing else."""
    try:
        document = json.loads(body)
    except (ValueError, UnicodeDecodeError) as err:
        raise PurgeFormatError("body is not JSON") from err
    if not isinstance(document, dict):
        raise PurgeFormatError("body must be a JSON object")
    unknown = sorted(set(document) - {*KINDS, "mode"})
    if unknown:
        raise PurgeFormatError(f"unknown field {unknown[0]!r}")
    mode = document.get("mode", "hard")
    if mode not in ("hard", "soft"):
        raise PurgeFormatError('mode must be "hard" or "soft"')
    lists = {kind: _strings(document.get(kind, []), kind) for kind in KINDS}
    total = sum(len(values) for values in lists.values())
    if total == 0:
        raise PurgeFormatError(
            "nothing to purge: give urls, prefixes, surrogate_keys or content_ids"
        )
    if total > MAX_PURGE_TARGETS:
        raise PurgeFormatError(f"too many targets: {total} > {MAX_PURGE_TARGETS}")
    for content_id in lists["content_ids"]:
        if not _CONTENT_ID.fullmatch(content_id):
            raise PurgeFormatError("content_ids must look like sha256:<64 hex>")
    return PurgeRequest(
        mode,
        tuple(_cache_key(url, "urls") for url in lists["urls"]),
        tuple(_cache_key(url, "prefixes") for url in lists["prefixes"]),
        tuple(lists["surrogate_keys"]),
        tuple(lists["content_ids"]),
    )


def _strings(value: Any, kind: str) -> list[str]:
    if not isinstance(value, list):
        raise PurgeFormatError(f"{kind} must be a list of strings")
    if len(value) > MAX_PURGE_TARGETS:
        raise PurgeFormatError(f"too many targets: {len(value)} > {MAX_PURGE_TARGETS}")
    for item in value:
        if not isinstance(item, str) or not item or len(item) > MAX_TARGET_CHARS:
            raise PurgeFormatError(f"{kind} must hold non-empty strings of <= {MAX_TARGET_CHARS}")
    return value


def _cache_key(url: str, kind: str) -> str:
    """An absolute http(s) URL as the cache names it (scheme and host normalised, RFC 9111 §2)."""
    found = _URL.fullmatch(url)
    if found is None:
        raise PurgeFormatError(f"{kind} must be absolute http(s) URLs")
    scheme, authority, target = found.groups()
    if kind == "urls" and not target.startswith("/"):
        target = "/" + target
    return primary_key(scheme.lower(), authority, target)


def keys_with_prefixes(keys: Iterable[str], prefixes: Iterable[str]) -> set[str]:
    """The keys that start with any prefix: one sort, then a binary search per prefix."""
    ordered = sorted(keys)
    found: set[str] = set()
    for prefix in prefixes:
        at = bisect.bisect_left(ordered, prefix)
        while at < len(ordered) and ordered[at].startswith(prefix):
            found.add(ordered[at])
            at += 1
    return found


class PurgeService:
    def __init__(self, store: ResponseStore, stats: ProxyStats, token: str | None) -> None:
        self.store = store
        self.stats = stats
        self.token = token
        self.token_id = token_id(token) if token else None

    def refuse(self, reason: str, peer: str) -> None:
        self.stats.purges_refused[reason] += 1
        log.warning("purge refused: reason=%s peer=%s", reason, peer)

    async def matching_keys(self, request: PurgeRequest) -> set[str]:
        store = self.store
        if request.surrogate_keys or request.content_ids:
            # Entries only on disk since a restart are indexed from their files' metadata: wait
            # for that scan (once per start), or the purge would miss them.
            await store.disk_labels_indexed()
        keys = set(request.urls)
        if request.prefixes:
            keys |= keys_with_prefixes(store.keys(), request.prefixes)
        for name in request.surrogate_keys:
            keys |= store.surrogates.keys_for(name)
        if request.content_ids:
            keys |= store.keys_for_contents(set(request.content_ids))
        return keys

    async def purge(self, request: PurgeRequest, peer: str) -> dict[str, Any]:
        # First, so that a fill which completes while this purge runs is covered too: it is
        # not stored (hard) or stored stale (soft), as if it had been cached a moment earlier.
        self.store.recent_purges.note(
            PurgeMark(
                time.time(),
                request.mode,
                frozenset(request.urls),
                request.prefixes,
                frozenset(request.surrogate_keys),
                frozenset(request.content_ids),
            )
        )
        keys = await self.matching_keys(request)
        purged = 0
        for key in sorted(keys):
            if request.mode == "hard":
                purged += self.store.invalidate(key)
            else:
                purged += await self.store.soft_purge(key)
        for kind in request.kinds():
            self.stats.purges[(kind, request.mode)] += 1
        self.stats.purged_objects[request.mode] += purged
        log.info(
            "purge mode=%s kinds=%s targets=%d purged=%d peer=%s token_id=%s",
            request.mode,
            ",".join(request.kinds()),
            sum(len(getattr(request, kind)) for kind in KINDS),
            purged,
            peer,
            self.token_id,
        )
        return {"mode": request.mode, "purged": purged}
