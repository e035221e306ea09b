"""Pure ingest decisions: which keys may verify a batch, whether it links to its edge's chain,
whether it is dated in the future, and which of two records for one request id wins.

No I/O and no clock: the shell reads the edge's keys and chain head from the store and passes
``now`` in. Every refusal raises a typed error from ``billing.errors`` carrying its reason.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

from billing.errors import ChainForkError, ChainGapError, FutureBatchError, RevokedKeyError
from provenance.batches import ZERO_HASH_HEX, BatchHeader, ChainHead
from provenance.errors import UnknownKeyError
from provenance.keys import KeyRing, VerifierKey
from provenance.records import parse_timestamp


def keyring_for(header: BatchHeader, keys: Iterable[tuple[VerifierKey, bool]]) -> KeyRing:
    """The ring of the edge's usable keys; RevokedKeyError if the header names a revoked key,
    UnknownKeyError if it names none of the edge's keys. ``keys``: (key, is_revoked) pairs."""
    usable: list[VerifierKey] = []
    named: VerifierKey | None = None
    revoked = False
    for key, is_revoked in keys:
        if key.name != header.edge:
            continue
        if key.key_id_hex == header.key_id:
            named, revoked = key, is_revoked
        if not is_revoked:
            usable.append(key)
    if named is None:
        raise UnknownKeyError(f"edge {header.edge} has no key {header.key_id}")
    if revoked:
        raise RevokedKeyError(f"key {header.edge}+{header.key_id} is revoked")
    return KeyRing(usable)


def check_chain(head: ChainHead | None, header: BatchHeader) -> None:
    """The header must directly follow ``head`` (None: the edge has no batch yet).

    Call only after ruling out an identical resend (same log leaf): then a seq at or below the
    head is a second, different batch for a used seq, i.e. a fork; a seq beyond head + 1 is a gap.
    """
    if head is None:
        if header.seq != 0:
            raise ChainGapError(f"edge {header.edge}: first batch has seq {header.seq}, want 0")
        if header.prev != ZERO_HASH_HEX:
            raise ChainForkError(f"edge {header.edge}: seq 0 must have prev of zeros")
        return
    if head.edge != header.edge:
        raise ValueError("check_chain() given the chain head of another edge")
    if header.seq > head.seq + 1:
        raise ChainGapError(f"edge {header.edge}: seq {header.seq} after head {head.seq}")
    if header.seq <= head.seq:
        raise ChainForkError(f"edge {header.edge}: another batch for used seq {header.seq}")
    if header.prev != head.header_hash:
        raise ChainForkError(f"edge {header.edge}: seq {header.seq} does not link to the head")


def check_not_future(header: BatchHeader, now: datetime, max_skew_s: float) -> None:
    """Refuse a batch whose newest record is dated beyond ``now + max_skew_s``."""
    if parse_timestamp(header.last_ts) > now + timedelta(seconds=max_skew_s):
        raise FutureBatchError(f"batch last_ts {header.last_ts} is in the future")


def is_preferred(new_upstream_of: str | None, old_upstream_of: str | None) -> bool:
    """True if a new record for a request id replaces the stored one: the record of the edge
    that served the client (``upstream_of`` null) wins over an ``upstream_of`` record; otherwise
    the first stored record stays. (The SQL upsert of each store encodes exactly this rule.)"""
    return new_upstream_of is None and old_upstream_of is not None
