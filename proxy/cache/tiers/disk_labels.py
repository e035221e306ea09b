"""What a purge needs to know about entries that are only on disk: each entry's surrogate keys
(``Surrogate-Key`` / ``Cache-Tag``) and the content ids its variants were attributed to.

The purge indexes (proxy.cache.surrogate.ReverseIndex) live in memory, so after a restart they
know none of the disk's entries. `read_labels` reads each entry file's header, key and metadata
(never the bodies), in the layout docs/design/disk-tier.md documents; it runs in a worker thread.
The metadata is not checked against the file's digest (that would mean reading the bodies): a
corrupt file can at worst add its key to a purge, and `DiskTier.get` still refuses to serve it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from proxy.cache.surrogate import surrogate_keys
from proxy.cache.tiers.disk import name_for
from proxy.cache.tiers.disk_format import (
    HEADER_BYTES,
    EntryFormatError,
    parse_header,
    parse_key,
    parse_labels,
)


@dataclass(frozen=True, slots=True)
class EntryLabels:
    key: str
    surrogate_keys: frozenset[str]
    content_ids: frozenset[str]


def read_labels(directory: Path, keys: list[str]) -> list[EntryLabels]:
    """The labels of each of ``keys`` whose entry file names any (a file that is gone,
    unreadable or not an entry of that key is skipped)."""
    found: list[EntryLabels] = []
    for key in keys:
        labels = _read_one(directory, key)
        if labels is not None and (labels.surrogate_keys or labels.content_ids):
            found.append(labels)
    return found


def _read_one(directory: Path, key: str) -> EntryLabels | None:
    name = name_for(key)
    path = directory / name[0] / name[1:3] / name
    try:
        with open(path, "rb") as f:
            head = f.read(HEADER_BYTES)
            header = parse_header(head)
            prefix = head + f.read(header.prefix_bytes - HEADER_BYTES)
        if parse_key(header, prefix) != key:
            return None
        fields, content_ids = parse_labels(header, prefix)
    except (OSError, EntryFormatError):
        return None
    return EntryLabels(key, surrogate_keys(fields), content_ids)
