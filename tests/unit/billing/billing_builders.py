"""Shared builders for the billing pure-core tests: records, a dict-backed registry."""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import strategies as st

from provenance.records import Record

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
CID_A = "sha256:" + "a" * 64
CID_B = "sha256:" + "b" * 64
CID_GONE = "sha256:" + "c" * 64
CID_NONE = "sha256:" + "d" * 64
MAN_A1 = "sha256:" + "1" * 64
MAN_A2 = "sha256:" + "2" * 64
MAN_B = "sha256:" + "3" * 64
MAN_GONE = "sha256:" + "4" * 64
SWITCH = "2026-11-27T06:00:00.000Z"  # CID_A moves from MAN_A1 to MAN_A2
GONE_EFFECTIVE = "2026-11-26T01:00:00.000Z"  # CID_GONE revoked at 00:00 with 1 h of grace


def manifest_active_at(content_id: str, ts: str) -> tuple[str, str, object] | None:
    """A fake registry: alice owns A (two versions) and GONE (revoked, grace 1 h), bob owns B."""
    if content_id == CID_A:
        return (MAN_A1 if ts < SWITCH else MAN_A2, "alice", None)
    if content_id == CID_B:
        return (MAN_B, "bob", None)
    if content_id == CID_GONE and ts < GONE_EFFECTIVE:
        return (MAN_GONE, "alice", None)
    return None


def is_revoked_at(content_id: str, ts: str) -> bool:
    return content_id == CID_GONE and ts >= GONE_EFFECTIVE


def make_record(
    request_id: str = "r1",
    ts: str = "2026-11-27T10:00:00.000Z",
    *,
    content_id: str | None = CID_A,
    manifest: str | None = MAN_A2,
    creator: str | None = "alice",
    **kw: object,
) -> Record:
    fields: dict[str, object] = {
        "edge": "edge-a",
        "method": "GET",
        "status": 200,
        "cache": "hit",
        "tier": "memory",
        "bytes": 1000,
        "origin_bytes": 0,
    }
    fields.update(kw)
    return Record(
        request_id=request_id,
        ts=ts,
        content_id=content_id,
        manifest=manifest,
        creator=creator,
        **fields,  # type: ignore[arg-type]
    )


_HOURS = st.integers(min_value=0, max_value=47)


@st.composite
def records(draw: st.DrawFn) -> Record:
    """Records across two days, every cache outcome, method, sample rate and content claim."""
    hour = draw(_HOURS)
    minute = draw(st.integers(0, 59))
    ts = f"2026-11-{26 + hour // 24:02d}T{hour % 24:02d}:{minute:02d}:00.000Z"
    content_id = draw(st.sampled_from([CID_A, CID_B, CID_GONE, CID_NONE, None]))
    flagged = content_id is not None and draw(st.booleans()) and draw(st.booleans())
    manifest = None if content_id is None or flagged else MAN_A1
    cache = draw(st.sampled_from(["hit", "miss", "stale", "revalidated", "bypass", "error"]))
    tier = "origin" if cache in ("miss", "bypass") else draw(st.sampled_from(["memory", "disk"]))
    size = draw(st.integers(0, 10**9))
    return make_record(
        f"r{draw(st.integers(0, 10**9))}",
        ts,
        content_id=content_id,
        manifest=manifest,
        creator=None if content_id is None else "alice",
        edge=draw(st.sampled_from(["edge-a", "edge-b"])),
        method=draw(st.sampled_from(["GET", "GET", "HEAD", "POST"])),
        status=draw(st.sampled_from([200, 200, 206, 304, 404, 500])),
        cache=cache,
        tier=tier,
        bytes=size,
        origin_bytes=size if tier == "origin" else 0,
        sample_rate=draw(st.sampled_from(["1", "1", "0.5", "0.25", "0.001", "0"])),
        use=draw(st.sampled_from(["view", "training"])),
        upstream_of=draw(st.sampled_from([None, None, None, "edge-z"])),
    )
