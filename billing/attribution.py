"""Attribution (issue 6): each deduplicated record goes to ONE outcome, either ``Attributed`` to
the manifest version active for its content id at the record's timestamp, or ``Excluded`` with
exactly one reason. Pure: the registry is a callable passed in, ``now`` is a parameter.

Checks run in this order; the first that applies gives the reason (so every record has one):

=====================  =======================================================================
``invalid``            sample_rate "0" (it cannot be scaled by 1/p), or ``ts`` later than
                       ``now`` + ``max_future_skew_s``
``upstream-duplicate`` ``upstream_of`` is set: our client was another cachet proxy, whose own
                       record of the client's request is the one that bills
``non-billable``       method other than GET/HEAD, cache outcome ``bypass`` or ``error``, or a
                       status other than 2xx and 304
``unknown-content``    no content id, or no manifest claims the content id at ``ts``
``hash-mismatch``      the edge flagged that the bytes did not hash to the claimed content: a
                       record with ``content_id`` and ``creator`` set but ``manifest`` null
                       (an edge only stamps the manifest when the bytes matched)
``revoked``            the content was revoked and ``ts`` is at or after revocation + grace
=====================  =======================================================================

Records within the grace window after a revocation bill to the manifest that was active just
before the revocation. A record whose ``manifest`` names another version than the registry's
active one (edge sync lag) bills to the registry's version: the version active at serve time.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from provenance.records import Record, parse_timestamp, sample_rate_ppm

ManifestActiveAt = Callable[[str, datetime], "tuple[str, str, object] | None"]
RevokedAt = Callable[[str], "datetime | None"]

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

BILLABLE_METHODS = frozenset({"GET", "HEAD"})
BILLABLE_CACHE_OUTCOMES = frozenset({"hit", "miss", "stale", "revalidated"})
DEFAULT_GRACE_S = 24 * 3600
DEFAULT_MAX_FUTURE_SKEW_S = 300
_ONE_MS = timedelta(milliseconds=1)


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


def _never_revoked(content_id: str) -> datetime | None:
    return None


def is_billable_outcome(record: Record) -> bool:
    """GET/HEAD answered with 2xx or 304 from cache or origin (not bypass, not error)."""
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
    revoked_at: RevokedAt = _never_revoked,
    grace_s: int = DEFAULT_GRACE_S,
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
        detail = f"{record.method} {record.status} cache={record.cache}"
        return Excluded(record, NON_BILLABLE, detail)
    if record.content_id is None:
        return Excluded(record, UNKNOWN_CONTENT, "no content id")
    if is_flagged_hash_mismatch(record):
        return Excluded(record, HASH_MISMATCH, "edge did not vouch for the bytes")
    return _attribute_content(record, record.content_id, served_at, manifest_active_at,
                              revoked_at(record.content_id), grace_s)  # fmt: skip


def _attribute_content(
    record: Record,
    content_id: str,
    served_at: datetime,
    manifest_active_at: ManifestActiveAt,
    revoked: datetime | None,
    grace_s: int,
) -> Attributed | Excluded:
    lookup_at = served_at
    if revoked is not None:
        if served_at >= revoked + timedelta(seconds=grace_s):
            return Excluded(record, REVOKED, f"revoked at {revoked.isoformat()}")
        lookup_at = min(served_at, revoked - _ONE_MS)
    found = manifest_active_at(content_id, lookup_at)
    if found is None:
        return Excluded(record, UNKNOWN_CONTENT, "no manifest active at serve time")
    manifest_id, creator, _item = found
    return Attributed(record, manifest_id, creator, served_at)


def attribute_all(
    records: Iterable[Record],
    manifest_active_at: ManifestActiveAt,
    *,
    now: datetime,
    revoked_at: RevokedAt = _never_revoked,
    grace_s: int = DEFAULT_GRACE_S,
) -> list[Attributed | Excluded]:
    """``attribute`` over many records, in order."""
    return [
        attribute(r, manifest_active_at, now=now, revoked_at=revoked_at, grace_s=grace_s)
        for r in records
    ]


def count_outcomes(outcomes: Iterable[Attributed | Excluded]) -> dict[str, int]:
    """Counts keyed ``attributed`` and each exclusion reason (all keys present, zero or more)."""
    counts: Counter[str] = Counter()
    for outcome in outcomes:
        counts[ATTRIBUTED if isinstance(outcome, Attributed) else outcome.reason] += 1
    return {key: counts[key] for key in (ATTRIBUTED, *EXCLUSION_REASONS)}
