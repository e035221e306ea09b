"""The shared tier's values: a disk tier entry file, whole, under a hashed key.

A value is exactly the bytes ``disk_format.encode_entry`` writes to an entry file, so it carries
its own length (the header), the full cache key and a SHA-256 over everything. Decoding checks
all three, and that the key inside is the key asked for: a value stored under the wrong name
(a bug, another deployment writing the same prefix) is never served. A truncated, extended or
corrupted value raises :class:`EntryFormatError`, nothing else.

The stored-at times travel inside (``request_time``, ``response_time``, the corrected initial
age), so the proxy that reads a value computes its age as RFC 9111 §4.2.3 says, from when the
first proxy received it, not from when it was read from the shared store.

Pure: no I/O, no clock.
"""

from __future__ import annotations

import hashlib
import math
from urllib.parse import urlsplit

from proxy.cache.entry import StoredResponse
from proxy.cache.tiers.disk_format import EntryFormatError, decode_entry, encode_entry
from proxy.config_values import ConfigError

Variants = tuple[StoredResponse, ...]

# How long a value outlives its freshness in the shared store: a stale copy with a validator
# still saves the body (a 304 refreshes it), and stale-if-error may serve it. Past this the
# store forgets it on its own, so nothing (a lost delete included) stays there forever.
KEEP_STALE_S = 3600
MAX_EXPIRY_S = 7 * 86400  # a max-age of years must not pin a value in Redis for years
SCHEMES = ("redis",)


def storage_key(prefix: str, key: str) -> str:
    """The shared store's name for cache key ``key``: fixed length whatever the URL, and no
    URL in the store's key space (the value holds it, checked on the way out)."""
    return prefix + hashlib.sha256(key.encode("utf-8")).hexdigest()


def encode_value(key: str, variants: Variants) -> bytes:
    """The value to store for ``key`` holding ``variants`` (newest first)."""
    return b"".join(encode_entry(key, variants).chunks)


def decode_value(key: str, value: bytes) -> Variants:
    """The variants in ``value`` if it is an intact entry for ``key``; EntryFormatError if not."""
    found_key, variants = decode_entry(value)
    if found_key != key:
        raise EntryFormatError("the value holds another cache key")
    return variants


def expiry_s(variants: Variants, now: float, keep_stale_s: int = KEEP_STALE_S) -> int:
    """Seconds the shared store keeps ``variants``: the freshest variant's remaining freshness
    (RFC 9111 §4.2.3 age at ``now``) plus ``keep_stale_s``, at most MAX_EXPIRY_S."""
    remaining = max(0.0, max(stored.ttl(now) for stored in variants))
    return min(MAX_EXPIRY_S, math.ceil(remaining) + keep_stale_s)


def check_shared_cache_url(text: str) -> None:
    """ConfigError unless ``text`` is a redis:// URL with a host (a password may be in it, so
    the message never repeats the value)."""
    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018 - validates the port
    except ValueError as err:
        raise ConfigError("shared_cache_url: not a URL with a valid port") from err
    if parts.scheme.lower() not in SCHEMES or not parts.hostname:
        raise ConfigError("shared_cache_url: expected redis://HOST[:PORT][/DB]")
    db = parts.path.strip("/")
    if db and not db.isdigit():
        raise ConfigError("shared_cache_url: the path is the database number, e.g. /0")
    if parts.query or parts.fragment:
        raise ConfigError("shared_cache_url: takes no query or fragment")
