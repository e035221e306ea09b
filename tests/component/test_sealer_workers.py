"""One chain from several spools: with ``--workers N`` each serving process appends to its own
``spool/w<N>/`` and one sealer seals them all, with the spool folder's own segments (a previous
single-process run), into the edge's one hash chain, every record exactly once, across crashes
(issue 4: "recovery seals any unsealed tail exactly once: no seq reused, no record duplicated or
lost"; issue 3: "--workers N ... sharing ... without corrupting it")."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from provenance.batches import chain_head as head_of
from provenance.batches import parse_sealed_batch, verify_chain
from proxy.records.batch_files import meta_path, read_batch_file
from proxy.records.receipts import ReceiptIndex
from proxy.records.sealer import Sealer, list_batches, read_counters
from proxy.records.spool import SpoolWriter
from tests.component.test_sealer import EDGE, KEY, record


def make_sealer(tmp_path: Path, **kwargs: int) -> Sealer:
    return Sealer(tmp_path / "spool", tmp_path / "batches", KEY, EDGE, **kwargs)


def write(spool_dir: Path, ids: range) -> None:
    writer = SpoolWriter(spool_dir)
    writer.open()
    for i in ids:
        assert writer.append(record(i))
    writer.flush()
    writer.close()


def sealed(tmp_path: Path) -> Counter[str]:
    seen: Counter[str] = Counter()
    head = None
    for seq, path in list_batches(tmp_path / "batches"):
        batch = parse_sealed_batch(read_batch_file(path)[0])
        assert batch.header.seq == seq
        verify_chain(head, batch.header)
        head = head_of(batch.header)
        seen.update(r.request_id for r in batch.records)
    return seen


def test_worker_spools_and_the_folder_itself_seal_into_one_chain(tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    write(spool, range(0, 7))  # a single-process run before --workers
    write(spool / "w0", range(100, 130))
    write(spool / "w1", range(200, 213))
    make_sealer(tmp_path, max_records=8).recover()
    seen = sealed(tmp_path)
    expected = [*range(0, 7), *range(100, 130), *range(200, 213)]
    assert seen == Counter(f"req-{i}" for i in expected)
    counters = [read_counters(p) for _, p in list_batches(tmp_path / "batches")]
    assert sum(c.emitted for c in counters if c) == len(expected)


def test_a_worker_spool_that_appears_later_is_sealed_too(tmp_path: Path) -> None:
    sealer = make_sealer(tmp_path, max_records=5)
    sealer.recover()
    write(tmp_path / "spool" / "w0", range(10))
    sealer.seal_ready(0, force=True)
    write(tmp_path / "spool" / "w3", range(50, 53))
    write(tmp_path / "spool" / "w0", range(10, 12))
    sealer.seal_ready(0, force=True)
    assert sealed(tmp_path) == Counter(f"req-{i}" for i in [*range(12), *range(50, 53)])


def seal_then_crash_before_the_marker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two worker spools sealed into one batch, and the process gone before the marker."""
    first = make_sealer(tmp_path, max_records=100)
    first.recover()
    write(tmp_path / "spool" / "w0", range(0, 6))
    write(tmp_path / "spool" / "w1", range(100, 104))
    with monkeypatch.context() as patch:

        def crash(*_args: object) -> None:
            raise OSError("simulated crash")

        patch.setattr(Sealer, "_write_marker", crash)
        with pytest.raises(OSError, match="simulated"):
            first.seal_ready(0, force=True)


def test_a_crash_between_batch_and_marker_resumes_every_spool_from_the_batch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seal_then_crash_before_the_marker(tmp_path, monkeypatch)
    write(tmp_path / "spool" / "w1", range(104, 106))
    make_sealer(tmp_path, max_records=100).recover()
    assert sealed(tmp_path) == Counter(f"req-{i}" for i in [*range(6), *range(100, 106)])


@pytest.mark.parametrize("layout", ["meta beside", "plain lines"])
def test_a_batch_file_of_an_older_layout_still_resumes_every_spool(
    layout: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Recovery after a crash between a batch and the marker reads the chain head and every
    spool's position from batch files of the older layouts too: the batch uncompressed with its
    meta in ``<batch>.meta`` beside it, or the batch on the file's first line and the meta on
    the second."""
    seal_then_crash_before_the_marker(tmp_path, monkeypatch)
    [(_, path)] = list_batches(tmp_path / "batches")
    batch, meta = read_batch_file(path)
    assert meta is not None
    if layout == "meta beside":
        path.write_bytes(batch)
        meta_path(path).write_bytes(meta.to_json())
    else:
        path.write_bytes(batch + b"\n" + meta.to_json())
    write(tmp_path / "spool" / "w1", range(104, 106))
    make_sealer(tmp_path, max_records=100).recover()
    assert sealed(tmp_path) == Counter(f"req-{i}" for i in [*range(6), *range(100, 106)])


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from(["", "w0", "w1", "w2"]), st.integers(1, 9), st.booleans()),
        min_size=1,
        max_size=14,
    ),
    st.integers(1, 7),
)
def test_any_interleaving_of_writes_and_sealer_restarts_seals_each_record_once(
    tmp_path_factory: pytest.TempPathFactory, steps: list[tuple[str, int, bool]], batch: int
) -> None:
    """Each step appends a flush to one spool; some steps then restart the sealer (a crash
    after its last batch: only full batches were sealed, the rest waits for the next one)."""
    tmp_path = tmp_path_factory.mktemp("workers")
    sealer = make_sealer(tmp_path, max_records=batch, max_interval_ms=10**9)
    sealer.recover()
    written: list[int] = []
    for name, count, restart in steps:
        ids = range(len(written), len(written) + count)
        write(tmp_path / "spool" / name, ids)
        written += ids
        sealer.seal_ready(0)  # full batches only
        if restart:
            sealer = make_sealer(tmp_path, max_records=batch, max_interval_ms=10**9)
            sealer.recover()  # seals the unsealed tail, forced
    sealer.seal_ready(0, force=True)
    assert sealed(tmp_path) == Counter(f"req-{i}" for i in written)


def test_a_receipt_finds_a_record_still_in_a_worker_spool(tmp_path: Path) -> None:
    write(tmp_path / "spool" / "w1", range(5))
    receipts = ReceiptIndex(tmp_path / "batches", tmp_path / "spool")
    found = receipts.lookup("req-3")
    assert found is not None
    assert found["batch"] is None
    assert found["record"]["request_id"] == "req-3"
