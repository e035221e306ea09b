"""Surrogate keys of entries that are only on disk, read back after a restart.

The surrogate-key index (proxy.cache.surrogate.ReverseIndex) lives in memory; after a restart
it would know none of the disk tier's entries, and a purge by surrogate key would miss them.
`scan_surrogate_keys` reads each entry file's header, key and metadata (never the bodies), in
the layout docs/design/disk-tier.md documents, and returns the surrogate keys its variants name.
It runs in a worker thread once the disk tier is open. The metadata is not checked against the
file's digest (that would mean reading the bodies): a corrupt file can at worst add a key to a
purge, and `DiskTier.get` still refuses to serve it.
"""

from __future__ import annotations

import json
from pathlib import Path

from proxy.cache.surrogate import SURROGATE_FIELDS, surrogate_keys
from proxy.cache.tiers.disk import name_for
from proxy.cache.tiers.disk_format import HEADER_BYTES, EntryFormatError, parse_header, parse_key


def scan_surrogate_keys(directory: Path, keys: list[str]) -> list[tuple[str, frozenset[str]]]:
    """(key, surrogate keys) for each of ``keys`` whose entry file names any."""
    found: list[tuple[str, frozenset[str]]] = []
    for key in keys:
        names = _read_names(directory, key)
        if names:
            found.append((key, names))
    return found


def _read_names(directory: Path, key: str) -> frozenset[str]:
    name = name_for(key)
    path = directory / name[0] / name[1:3] / name
    try:
        with open(path, "rb") as f:
            head = f.read(HEADER_BYTES)
            header = parse_header(head)
            prefix = head + f.read(header.prefix_bytes - HEADER_BYTES)
        if parse_key(header, prefix) != key:
            return frozenset()
        meta = json.loads(prefix[HEADER_BYTES + header.key_len : header.prefix_bytes])
        fields = [
            (str(field), str(value))
            for variant in meta["variants"]
            for field, value in variant["headers"]
            if str(field).lower() in SURROGATE_FIELDS
        ]
    except (OSError, EntryFormatError, ValueError, KeyError, TypeError, RecursionError):
        return frozenset()
    return surrogate_keys(fields)
