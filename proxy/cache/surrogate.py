"""Surrogate keys: the names an origin gives a response so an operator can purge a group of URLs
at once (Fastly's ``Surrogate-Key``, space-separated; Cloudflare's ``Cache-Tag``, comma-separated),
and the reverse index from each name to the cache keys that carry it. Pure: no I/O.

The fields are kept in the stored response (so an entry read back from disk can be indexed
again) but never sent to clients: they describe the origin's cache layout, not the resource
(docs/purge.md).
"""

from __future__ import annotations

from collections.abc import Iterable

from proxy.http.fields import Headers

SURROGATE_FIELDS = frozenset({"surrogate-key", "cache-tag"})
MAX_KEYS_PER_RESPONSE = 256  # a response naming more is indexed by its first 256
MAX_KEY_CHARS = 1024


def surrogate_keys(headers: Headers) -> frozenset[str]:
    """The surrogate keys a response's fields name (Surrogate-Key by spaces, Cache-Tag by
    commas); empty or over-long names are skipped."""
    names: list[str] = []
    for name, value in headers:
        lower = name.lower()
        if lower == "surrogate-key":
            names += value.split()
        elif lower == "cache-tag":
            names += (part.strip() for part in value.split(","))
    kept = [n for n in names if n and len(n) <= MAX_KEY_CHARS]
    return frozenset(kept[:MAX_KEYS_PER_RESPONSE])


def strip_surrogate_fields(head_bytes: bytes) -> bytes:
    """A serialised head without its Surrogate-Key / Cache-Tag lines."""
    return strip_head_fields(head_bytes, SURROGATE_FIELDS)


def strip_head_fields(head_bytes: bytes, names: frozenset[str]) -> bytes:
    """A serialised head (status line, field lines) without the lines of fields ``names``
    (lowercase)."""
    lower = head_bytes.lower()
    if not any(b"\n" + name.encode("latin-1") + b":" in lower for name in names):
        return head_bytes
    kept = [
        line
        for line in head_bytes.split(b"\r\n")
        if line.split(b":", 1)[0].strip().lower().decode("latin-1") not in names
    ]
    return b"\r\n".join(kept)


class ReverseIndex:
    """name -> cache keys, and back, so a key's names can be dropped when the key goes."""

    def __init__(self) -> None:
        self._keys_by_name: dict[str, set[str]] = {}
        self._names_by_key: dict[str, frozenset[str]] = {}

    def set(self, key: str, names: Iterable[str]) -> None:
        """Replace what ``key`` is indexed under (an empty ``names`` forgets it)."""
        self.remove(key)
        kept = frozenset(names)
        if not kept:
            return
        self._names_by_key[key] = kept
        for name in kept:
            self._keys_by_name.setdefault(name, set()).add(key)

    def remove(self, key: str) -> None:
        for name in self._names_by_key.pop(key, ()):
            keys = self._keys_by_name.get(name)
            if keys is not None:
                keys.discard(key)
                if not keys:
                    del self._keys_by_name[name]

    def __contains__(self, key: object) -> bool:
        return key in self._names_by_key

    def keys(self) -> frozenset[str]:
        """Every indexed cache key (a snapshot)."""
        return frozenset(self._names_by_key)

    def keys_for(self, name: str) -> frozenset[str]:
        return frozenset(self._keys_by_name.get(name, ()))

    def __len__(self) -> int:
        return len(self._names_by_key)
