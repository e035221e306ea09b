"""Hypothesis strategies and builders shared by the provenance tests."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hypothesis import strategies as st

from provenance import fastrecords
from provenance.records import CACHE_OUTCOMES, TIERS, USES, Record

HEX = "0123456789abcdef"
names = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,20}", fullmatch=True)
content_ids = st.text(HEX, min_size=64, max_size=64).map(lambda h: "sha256:" + h)
timestamps = st.builds(
    lambda y, mo, d, h, mi, s, ms: f"{y:04d}-{mo:02d}-{d:02d}T{h:02d}:{mi:02d}:{s:02d}.{ms:03d}Z",
    st.integers(1970, 2100),
    st.integers(1, 12),
    st.integers(1, 28),
    st.integers(0, 23),
    st.integers(0, 59),
    st.integers(0, 59),
    st.integers(0, 999),
)
sample_rates = st.sampled_from(["0", "1", "0.5", "0.25", "0.000001", "0.123456", "0.1"])
counts = st.integers(0, 2**53 - 1)


@st.composite
def records(draw: st.DrawFn, edge: str | None = None) -> Record:
    attributed = draw(st.booleans())
    return Record(
        request_id=draw(
            st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=40)
        ),
        ts=draw(timestamps),
        edge=edge if edge is not None else draw(names),
        method=draw(st.sampled_from(["GET", "HEAD", "POST", "PURGE", "M-SEARCH"])),
        status=draw(st.integers(100, 599)),
        cache=draw(st.sampled_from(sorted(CACHE_OUTCOMES))),
        tier=draw(st.sampled_from(sorted(TIERS))),
        bytes=draw(counts),
        origin_bytes=draw(counts),
        content_id=draw(content_ids) if attributed else draw(st.none() | content_ids),
        creator=draw(names) if attributed else None,
        manifest=draw(content_ids) if attributed else None,
        sample_rate=draw(sample_rates),
        use=draw(st.sampled_from(sorted(USES))),
        upstream_of=draw(st.none() | names),
        trace_id=draw(
            st.none() | st.text(HEX, min_size=32, max_size=32).filter(lambda t: t != "0" * 32)
        ),
        cache_key_hash=draw(st.none() | content_ids),
    )


def make_record(index: int = 0, edge: str = "edge-1", **overrides: object) -> Record:
    fields: dict[str, object] = {
        "request_id": f"req-{index:06d}",
        "ts": f"2026-11-27T03:38:{index % 60:02d}.{index % 1000:03d}Z",
        "edge": edge,
        "method": "GET",
        "status": 200,
        "cache": "hit",
        "tier": "memory",
        "bytes": 1000 + index,
        "origin_bytes": 0,
        "content_id": "sha256:" + f"{index:064x}",
        "creator": "alice",
        "manifest": "sha256:" + "ab" * 32,
        "sample_rate": "1",
    }
    fields.update(overrides)
    return Record(**fields)  # type: ignore[arg-type]


MUTATION_BYTES = b'0123456789abcdefxyz"{}:,.-#\n\\ \x00\xff'


def mutate(draw: st.DrawFn, raw: bytearray) -> bytes:
    """``raw`` with one to three bytes replaced, deleted or inserted (JSON's structural bytes,
    digits, hex, newlines, counters-line bytes, NUL and 0xFF): some mutants are still valid."""
    for _ in range(draw(st.integers(1, 3))):
        index = draw(st.integers(0, len(raw) - 1))
        action = draw(st.sampled_from(["replace", "delete", "insert"]))
        byte = draw(st.sampled_from(MUTATION_BYTES))
        if action == "replace":
            raw[index] = byte
        elif action == "delete" and len(raw) > 1:
            del raw[index]
        else:
            raw.insert(index, byte)
    return bytes(raw)


def both_implementations(attribute: str, pure: str) -> Callable[..., Any]:
    """An autouse fixture that runs every test of the module twice: with
    ``provenance.fastrecords.<attribute>`` (the compiled module) and with it set to None (the
    pure-Python reference, named ``pure``). Module-scoped: hypothesis allows no function-scoped
    fixture."""

    @pytest.fixture(autouse=True, scope="module", params=[pure, "compiled"])
    def implementation(request: pytest.FixtureRequest) -> Iterator[str]:
        compiled = getattr(fastrecords, attribute)
        if request.param == pure:
            setattr(fastrecords, attribute, None)
        try:
            yield request.param
        finally:
            setattr(fastrecords, attribute, compiled)

    return implementation


def largest_record(request_id: str = '"' * 128) -> Record:
    """Every field at its bound: a request id of 128 characters that each escape to two
    (RFC 8785 §3.2.2.2), names of 64, the longest status, enum values and sample rate."""
    digest = "sha256:" + "f" * 64
    return Record(
        request_id=request_id, ts="2026-11-28T05:00:00.000Z", edge="e" * 64, method="M" * 32,
        status=599, cache="revalidated", tier="memory", bytes=2**53 - 1,
        origin_bytes=2**53 - 1, content_id=digest, creator="c" * 64, manifest=digest,
        sample_rate="0.123457", use="training", upstream_of="u" * 64, trace_id="f" * 32,
        cache_key_hash=digest,
    )  # fmt: skip
