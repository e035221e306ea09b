"""Attribution (issue 6): each deduplicated record goes to ONE outcome, either ``Attributed`` to
the manifest version active for its content id at the record's timestamp, or ``Excluded`` with
exactly one reason. Pure: the registry is a callable passed in, ``now`` is a parameter.

Checks run in this order; the first that applies gives the reason (so every record has one):

=====================  =======================================================================
``invalid``            sample_rate "0" (it cannot be scaled by 1/p), or ``ts`` later than
                       ``now`` + ``max_future_skew_s``
``upstream-duplicate`` ``upstream_of`` is set: our client was another cachet proxy, whose own
                       record of the client's request is the one that bills
``non-billable``       method other than GET (HEAD included: it serves no content bytes, and a
                       HEAD miss has no content id), cache outcome ``bypass`` or ``error``, or a
                       status other than 2xx and 304
``hash-mismatch``      the edge flagged that the bytes did not hash to the claimed content: a
                       record with ``content_id`` and ``creator`` set but ``manifest`` null
                       (an edge only stamps the manifest when the bytes matched)
``revoked``            no version is active at ``ts`` and one naming the content was revoked
                       with effect (revocation + grace window) at or before ``ts``
``unknown-content``    no content id, or no manifest claims the content id at ``ts``
=====================  =======================================================================

Records within a revocation's grace window still bill: the registry keeps the version active
until revocation + grace. If another version claims the content after a revocation, it bills.
A record without a content id is ``unknown-content`` before the hash-mismatch check. A record
whose ``manifest`` names another version than the registry's active one (edge sync lag) bills to
the registry's version: the version active at serve time.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from provenance.records import Record, parse_timestamp, sample_rate_ppm

# (content_id, ts) -> (manifest_id, creator, item) | None: the registry's answer, a version's
# activity ending at its revocation + grace (``billing.registry.timeline``); ts is the record's
# RFC 3339 UTC millisecond string (fixed width, so string order is time order).
ManifestActiveAt = Callable[[str, str], "tuple[str, str, object] | None"]
# (content_id, ts) -> True if a manifest naming the content was revoked with effect (revocation
# + grace) at or before ts: tells "revoked" from "unknown" when no version is active.
IsRevokedAt = Callable[[str, str], bool]

INVALID = "invalid"
UPSTREAM_DUPLICATE = "upstream-duplicate"
NON_BILLABLE = "non-billable"
UNKNOWN_CONTENT = "unknown-content"
HASH_MISMATCH = "hash-mismatch"
REVOKED = "revoked"
EXCLUSION_REASONS: tuple[str, ...] = (
    INVALID, UPSTREAM_DUPLICATE, NON_BILLABLE, UNKNOWN_CONTENT, HASH_MISMATCH, REVOKED,
)  # fmt: skip
ATTRIBUTED = "attributed"

# Creators are paid for their content served (bytes, hits): a HEAD answer carries none, so it is
# not billable (else a HEAD miss, which has no content id, would read as unknown content).
BILLABLE_METHODS = frozenset({"GET"})
BILLABLE_CACHE_OUTCOMES = frozenset({"hit", "miss", "stale", "revalidated"})
DEFAULT_MAX_FUTURE_SKEW_S = 300


@dataclass(frozen=True, slots=True)
class Attributed:
    """A record that bills: to ``creator`` under ``manifest_id``, served at ``served_at``."""

    record: Record
    manifest_id: str
    creator: str
    served_at: datetime


@dataclass(frozen=True, slots=True)
class Excluded:
    """A record that does not bill, with the one reason (a token of ``EXCLUSION_REASONS``)."""

    record: Record
    reason: str
    detail: str


def _never_revoked(content_id: str, ts: str) -> bool:
    return False


def is_billable_outcome(record: Record) -> bool:
    """GET answered with 2xx or 304 from cache or origin (not bypass, not error)."""
    return (
        record.method in BILLABLE_METHODS
        and record.cache in BILLABLE_CACHE_OUTCOMES
        and (200 <= record.status <= 299 or record.status == 304)
    )


def is_flagged_hash_mismatch(record: Record) -> bool:
    """The edge knew the claim (content id and creator) but did not vouch for the bytes."""
    return record.content_id is not None and record.creator is not None and record.manifest is None


def _invalid_detail(record: Record, served_at: datetime, now: datetime, skew_s: int) -> str:
    if sample_rate_ppm(record.sample_rate) == 0:
        return "sample_rate 0 cannot be scaled"
    if served_at > now + timedelta(seconds=skew_s):
        return "timestamp in the future"
    return ""


def attribute(
    record: Record,
    manifest_active_at: ManifestActiveAt,
    *,
    now: datetime,
    is_revoked_at: IsRevokedAt = _never_revoked,
    max_future_skew_s: int = DEFAULT_MAX_FUTURE_SKEW_S,
) -> Attributed | Excluded:
    """The one outcome of ``record`` (see the module docstring for the order of checks)."""
    served_at = parse_timestamp(record.ts)
    invalid = _invalid_detail(record, served_at, now, max_future_skew_s)
    if invalid:
        return Excluded(record, INVALID, invalid)
    if record.upstream_of is not None:
        return Excluded(record, UPSTREAM_DUPLICATE, f"served to edge {record.upstream_of}")
    if not is_billable_outcome(record):
        if record.method == "HEAD":
            detail = "HEAD serves no content"
        else:
            detail = f"{record.method} {record.status} cache={record.cache}"
        return Excluded(record, NON_BILLABLE, detail)
    if record.content_id is None:
        return Excluded(record, UNKNOWN_CONTENT, "no content id")
    if is_flagged_hash_mismatch(record):
        return Excluded(record, HASH_MISMATCH, "edge did not vouch for the bytes")
    found = manifest_active_at(record.content_id, record.ts)
    if found is not None:
        manifest_id, creator, _item = found
        return Attributed(record, manifest_id, creator, served_at)
    if is_revoked_at(record.content_id, record.ts):
        return Excluded(record, REVOKED, "revoked, grace window over")
    return Excluded(record, UNKNOWN_CONTENT, "no manifest active at serve time")


def attribute_all(
    records: Iterable[Record],
    manifest_active_at: ManifestActiveAt,
    *,
    now: datetime,
    is_revoked_at: IsRevokedAt = _never_revoked,
) -> list[Attributed | Excluded]:
    """``attribute`` over many records, in order."""
    return [attribute(r, manifest_active_at, now=now, is_revoked_at=is_revoked_at) for r in records]


def count_outcomes(outcomes: Iterable[Attributed | Excluded]) -> dict[str, int]:
    """Counts keyed ``attributed`` and each exclusion reason (all keys present, zero or more)."""
    counts: Counter[str] = Counter()
    for outcome in outcomes:
        counts[ATTRIBUTED if isinstance(outcome, Attributed) else outcome.reason] += 1
    return {key: counts[key] for key in (ATTRIBUTED, *EXCLUSION_REASONS)}
