"""Sealer over chunked frames (several records per spool frame, proxy.records.segments):
batches may end inside a frame, recovery resumes inside it exactly once, and every batch says
how many answers it stands for (served, emitted, dropped) for the coordinator's reconciliation
(issue 6 "Reconciliation"; docs/billing.md)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from provenance.batches import header_hash, parse_sealed_batch, verify_batch
from provenance.keys import KeyRing
from proxy.records.batch_files import BatchCounters, read_batch_file
from proxy.records.sealer import Sealer, list_batches, parse_batch_name, read_counters
from proxy.records.spool import SpoolWriter
from tests.component.test_sealer import EDGE, KEY, record, sealed_ids


def make_sealer(tmp_path: Path, **kwargs: int) -> Sealer:
    return Sealer(tmp_path / "spool", tmp_path / "batches", KEY, EDGE, **kwargs)


def spool_flushes(spool_dir: Path, flushes: list[range]) -> None:
    """One flush (one chunk) per range of record numbers."""
    writer = SpoolWriter(spool_dir)
    writer.open()
    for ids in flushes:
        for i in ids:
            assert writer.append(record(i))
        writer.flush()
    writer.close()


def test_a_batch_can_end_inside_a_frame(tmp_path: Path) -> None:
    spool_flushes(tmp_path / "spool", [range(25)])
    make_sealer(tmp_path, max_records=10).recover()
    batches = list_batches(tmp_path / "batches")
    skips = [parse_batch_name(path.name)[3] for _, path in batches]  # type: ignore[index]
    assert skips == [10, 20, 0]
    assert sealed_ids(tmp_path / "batches") == [f"req-{i}" for i in range(25)]


def test_recovery_inside_a_frame_seals_the_rest_once(tmp_path: Path) -> None:
    spool_flushes(tmp_path / "spool", [range(25)])
    first = make_sealer(tmp_path, max_records=10, max_interval_ms=60_000)
    first.recover()  # forced: all 25, in 10 + 10 + 5
    spool_flushes(tmp_path / "spool", [range(25, 48), range(48, 50)])
    second = make_sealer(tmp_path, max_records=10, max_interval_ms=60_000)
    second.recover()
    assert sealed_ids(tmp_path / "batches") == [f"req-{i}" for i in range(50)]
    # A sealer that stopped after full batches only (a crash before the forced tail):
    spool_flushes(tmp_path / "spool", [range(50, 75)])
    third = make_sealer(tmp_path, max_records=10, max_interval_ms=60_000)
    third.recover()
    spool_flushes(tmp_path / "spool", [range(75, 98)])
    assert len(third.seal_ready(0)) == 2  # 20 of the 23 new records; 3 wait mid-frame
    fourth = make_sealer(tmp_path, max_records=10, max_interval_ms=60_000)
    fourth.recover()
    assert sealed_ids(tmp_path / "batches") == [f"req-{i}" for i in range(98)]
    seqs = [seq for seq, _ in list_batches(tmp_path / "batches")]
    assert seqs == list(range(len(seqs)))


def test_crash_between_a_mid_frame_batch_and_its_marker_seals_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = make_sealer(tmp_path, max_records=10)
    first.recover()
    spool_flushes(tmp_path / "spool", [range(15)])
    with monkeypatch.context() as patch:

        def crash(*_args: object) -> None:
            raise OSError("simulated crash")

        patch.setattr(Sealer, "_write_marker", crash)
        with pytest.raises(OSError, match="simulated"):
            first.seal_ready(0)  # batch 0 = records 0..9, ending inside the frame
    second = make_sealer(tmp_path, max_records=10)
    second.recover()
    assert sealed_ids(tmp_path / "batches") == [f"req-{i}" for i in range(15)]
    headers = [
        parse_sealed_batch(read_batch_file(p)[0]).header
        for _, p in list_batches(tmp_path / "batches")
    ]
    assert [h.seq for h in headers] == [0, 1]
    assert headers[1].prev == header_hash(headers[0])


def test_an_old_marker_without_skip_still_recovers(tmp_path: Path) -> None:
    spool_flushes(tmp_path / "spool", [range(3)])
    make_sealer(tmp_path).recover()
    marker = tmp_path / "spool" / "sealed.json"
    text = marker.read_text()
    marker.write_text(text.replace(', "skip": 0', ""))
    spool_flushes(tmp_path / "spool", [range(3, 5)])
    make_sealer(tmp_path).recover()
    assert sealed_ids(tmp_path / "batches") == [f"req-{i}" for i in range(5)]


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.lists(st.sampled_from(["record", "sampled", "dropped"]), max_size=30), max_size=8),
    st.integers(1, 12),
)
def test_batch_counters_add_up_to_every_answer(
    tmp_path_factory: pytest.TempPathFactory, flushes: list[list[str]], max_records: int
) -> None:
    """Across all batches: served = every answer, emitted = every record, dropped = every
    record a full spool refused; and each batch stands for at least its own records."""
    tmp_path = tmp_path_factory.mktemp("counters")
    writer = SpoolWriter(tmp_path / "spool")
    writer.open()
    n = 0
    for answers in flushes:
        for kind in answers:
            if kind == "record":
                assert writer.append(record(n))
                n += 1
            elif kind == "sampled":
                writer.skip()
            else:
                full = writer.max_bytes
                writer.max_bytes = 0  # the spool is full for this one record
                assert not writer.append(record(10_000 + n))
                writer.max_bytes = full
        writer.flush()
    writer.close()
    make_sealer(tmp_path, max_records=max_records).recover()
    counters = [read_counters(path) for _, path in list_batches(tmp_path / "batches")]
    assert all(c is not None for c in counters)
    served = sum(c.served for c in counters if c)
    emitted = sum(c.emitted for c in counters if c)
    dropped = sum(c.dropped for c in counters if c)
    assert emitted == n == len(sealed_ids(tmp_path / "batches"))
    # Answers after the last record have no frame yet: they ride on the next flush with records.
    answered_before_last_record = _answers_up_to_last_record(flushes)
    assert served == answered_before_last_record["served"]
    assert dropped == answered_before_last_record["dropped"]
    assert all(c.served >= c.emitted + c.dropped for c in counters if c)


def _answers_up_to_last_record(flushes: list[list[str]]) -> dict[str, int]:
    """Answers in flushes up to and including the last flush that wrote a record."""
    served = dropped = 0
    total = {"served": 0, "dropped": 0}
    for answers in flushes:
        served += len(answers)
        dropped += answers.count("dropped")
        if "record" in answers:
            total = {"served": served, "dropped": dropped}
    return total


def test_each_batch_file_is_the_sealed_batch_then_its_meta_on_the_next_line(
    tmp_path: Path,
) -> None:
    """One file per batch (docs/design/spool.md): the first line is exactly what the forwarder
    sends and the coordinator verifies, the second the answers and spool positions."""
    spool_flushes(tmp_path / "spool", [range(4)])
    make_sealer(tmp_path).recover()
    [name] = os.listdir(tmp_path / "batches")
    batch, meta = read_batch_file(tmp_path / "batches" / name)
    assert name.endswith(".batch") and b"\n" not in batch
    verify_batch(parse_sealed_batch(batch), KeyRing([KEY.verifier]))
    assert meta is not None and meta.counters == BatchCounters(served=4, emitted=4, dropped=0)
    parsed = parse_batch_name(name)
    assert parsed is not None and meta.positions[""] == parsed[1:]


def test_a_backlog_is_read_a_few_segments_at_a_time_and_sealed_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Bounded memory on a large backlog: the sealer reads until it has enough pending, seals
    those batches, then reads on; the result is the same as reading everything at once."""
    monkeypatch.setattr("proxy.records.sealer.READ_AHEAD_RECORDS", 7)
    writer = SpoolWriter(tmp_path / "spool", segment_bytes=1500)
    writer.open()
    for start in range(0, 120, 6):
        for i in range(start, start + 6):
            assert writer.append(record(i))
        writer.flush()
    writer.close()
    sealer = make_sealer(tmp_path, max_records=3)
    read_sizes: list[int] = []
    original = Sealer._read_segment

    def spy(self: Sealer, *args: object, **kwargs: object) -> None:
        read_sizes.append(len(self._pending))
        original(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Sealer, "_read_segment", spy)
    sealer.recover()
    assert sealed_ids(tmp_path / "batches") == [f"req-{i}" for i in range(120)]
    assert len(read_sizes) > 3 and max(read_sizes) < 7  # never the whole backlog at once
