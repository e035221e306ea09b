"""The sealer's fast paths change nothing on disk: the same spool sealed with runs of frames in
compiled code (``scan_spool_run``), with the whole-chunk check frame by frame
(proxy.records.chunk_check) and with the record-by-record path alone gives byte-identical batches
(RFC 9162 roots, Ed25519 signatures are deterministic, RFC 8032 §5.1.6), counters, positions,
marker and quarantined records, across invalid records, counters lines, batches ending inside
frames, several spools and restarts."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from provenance import fastrecords
from provenance.keys import generate_signing_key
from provenance.records import Record, record_to_canonical_bytes
from proxy.records.chunk_check import ChunkChecker
from proxy.records.sealer import Sealer
from proxy.records.spool import SpoolWriter

EDGE = "edge-1"
KEY = generate_signing_key(EDGE, bytes(range(32)))
KINDS = ["record", "record", "record", "invalid", "other-edge", "sampled", "dropped"]


def record(i: int, edge: str = EDGE) -> bytes:
    return record_to_canonical_bytes(
        Record(request_id=f"req-{i}", ts=f"2026-11-27T03:00:{i % 60:02d}.{i % 1000:03d}Z",
               edge=edge, method="GET", status=200, cache="hit", tier="memory", bytes=i,
               origin_bytes=0)
    )  # fmt: skip


def write_spools(spool_dir: Path, flushes: list[tuple[int, list[str]]]) -> None:
    """Each flush goes to spool ``w<n>`` (n > 0) or the folder itself (n = 0)."""
    writers: dict[int, SpoolWriter] = {}
    n = 0
    for spool, answers in flushes:
        writer = writers.get(spool)
        if writer is None:
            folder = spool_dir / f"w{spool}" if spool else spool_dir
            writer = writers[spool] = SpoolWriter(folder, segment_bytes=2000)
            writer.open()
        for kind in answers:
            n += 1
            if kind == "record":
                writer.append(record(n))
            elif kind == "invalid":
                writer.append(record(n).replace(b"03:00:", b"03:61:"))
            elif kind == "other-edge":
                writer.append(record(n, edge="edge-2"))
            elif kind == "sampled":
                writer.skip()
            else:
                full, writer.max_bytes = writer.max_bytes, 0
                assert not writer.append(record(n))
                writer.max_bytes = full
        writer.flush()
    for writer in writers.values():
        writer.close()


def seal(root: Path, flushes: list[tuple[int, list[str]]], split: int, max_records: int) -> None:
    """Write the first ``split`` flushes, seal, write the rest, seal again after a restart."""
    write_spools(root / "spool", flushes[:split])
    sealer = Sealer(root / "spool", root / "batches", KEY, EDGE, max_records=max_records)
    sealer.recover()
    write_spools(root / "spool", flushes[split:])
    sealer.seal_ready(0)
    Sealer(root / "spool", root / "batches", KEY, EDGE, max_records=max_records).recover()


def files(root: Path) -> dict[str, bytes]:
    """Every file the sealer leaves (spool segments aside), by path."""
    found = {}
    for path in sorted(root.rglob("*")):
        if path.is_file() and path.suffix != ".seg":
            found[str(path.relative_to(root))] = path.read_bytes()
    return found


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 2), st.lists(st.sampled_from(KINDS), max_size=12)), max_size=10
    ),
    st.integers(0, 10),
    st.integers(1, 9),
)
def test_the_fast_path_seals_exactly_what_the_record_by_record_path_seals(
    tmp_path_factory: pytest.TempPathFactory,
    flushes: list[tuple[int, list[str]]],
    split: int,
    max_records: int,
) -> None:
    def work(root: Path) -> None:
        seal(root, flushes, split, max_records)

    sealed = {mode: in_mode(mode, work, tmp_path_factory) for mode in MODES}
    assert sealed["run"] == sealed["record"]
    assert sealed["chunk"] == sealed["record"]


MODES = ("run", "chunk", "record")


def in_mode(
    mode: str, work: Callable[[Path], None], tmp_path_factory: pytest.TempPathFactory
) -> dict[str, bytes]:
    """``work`` in a new folder with the sealer's runs of frames in compiled code (``run``, the
    default), the chunk check frame by frame (``chunk``), or record by record (``record``, the
    reference); the files it left."""
    root = tmp_path_factory.mktemp(mode)
    with pytest.MonkeyPatch.context() as patch:
        if mode != "run":
            patch.setattr(fastrecords, "scan_spool_run", None)
        if mode == "record":
            patch.setattr(ChunkChecker, "check", lambda self, payload, seconds: None)
        work(root)
    return files(root)


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 2), st.lists(st.sampled_from(KINDS), max_size=12)), max_size=10
    ),
    st.lists(st.tuples(st.integers(0, 10**6), st.integers(1, 255)), min_size=1, max_size=3),
    st.integers(1, 9),
)
def test_corrupt_spool_bytes_are_set_aside_alike_on_every_path(
    tmp_path_factory: pytest.TempPathFactory,
    flushes: list[tuple[int, list[str]]],
    flips: list[tuple[int, int]],
    max_records: int,
) -> None:
    """Bit flips in the spool (docs/design/spool.md "Frames"): every path quarantines the same
    bytes, resynchronises at the same frame and seals the same batches."""

    def work(root: Path) -> None:
        write_spools(root / "spool", flushes)
        segments = sorted((root / "spool").rglob("*.seg"))
        for where, xor in flips:
            if segments:
                path = segments[where % len(segments)]
                data = bytearray(path.read_bytes())
                if data:
                    data[where % len(data)] ^= xor
                    path.write_bytes(bytes(data))
        Sealer(root / "spool", root / "batches", KEY, EDGE, max_records=max_records).recover()

    sealed = {mode: in_mode(mode, work, tmp_path_factory) for mode in MODES}
    assert sealed["run"] == sealed["record"]
    assert sealed["chunk"] == sealed["record"]
