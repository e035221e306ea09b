"""Segments with a zero-filled tail (docs/design/spool.md "Frames"): a mapped writer preallocates
each segment, so its frames are followed by zeros up to the file's size; it truncates them when
it moves on, a killed writer leaves them. It writes a frame's payload first and its header last,
so a zero header at a frame boundary is "not written yet".

The sealer reads segments in bounded pieces: in the last segment it stops at the zero header
and seals what is written there later exactly once; a segment that is not the last ends at its
zero tail without setting anything aside, and the nonzero bytes of a torn frame in that tail are
all it sets aside; a frame cut by a piece's end is read whole with the next piece."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.records import sealer as sealer_module
from proxy.records.sealer import Sealer
from proxy.records.segments import encode_chunks
from proxy.records.spool import segment_name
from tests.component.test_sealer import KEY, record, sealed_ids

EDGE = "edge-1"
TAIL = 1 << 20  # the file size the tests' segments are preallocated to


def frames(ids: range, per_frame: int = 1) -> bytes:
    """The frames of records ``ids``, ``per_frame`` records a frame (the mapped writer: one)."""
    return b"".join(
        encode_chunks([record(i) for i in ids[start : start + per_frame]], per_frame, 0)
        for start in range(0, len(ids), per_frame)
    )


def write_segment(spool: Path, number: int, data: bytes, size: int = TAIL) -> Path:
    """A segment holding ``data``, then zeros up to ``size`` bytes (as a mapped writer leaves
    it; os.truncate extends the file with zeros)."""
    spool.mkdir(parents=True, exist_ok=True)
    path = spool / segment_name(number)
    path.write_bytes(data)
    os.truncate(path, max(size, len(data)))
    return path


def quarantined(spool: Path) -> dict[str, bytes]:
    folder = spool / "quarantine"
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())} if folder.is_dir() else {}


def make_sealer(root: Path, max_records: int = 4) -> Sealer:
    return Sealer(root / "spool", root / "batches", KEY, EDGE, max_records=max_records)


def ids(numbers: range) -> list[str]:
    return [f"req-{i}" for i in numbers]


def test_the_last_segment_is_sealed_up_to_its_zero_tail_once(tmp_path: Path) -> None:
    """Every record before the zero tail is sealed exactly once, nothing is set aside, and
    sealing resumes at the written end (the marker's offset), not at the file's end."""
    spool = tmp_path / "spool"
    data = frames(range(10))
    write_segment(spool, 0, data)
    sealer = make_sealer(tmp_path)
    sealer.recover()
    sealer.seal_ready(0, force=True)
    make_sealer(tmp_path).recover()
    assert sealed_ids(tmp_path / "batches") == ids(range(10))
    assert quarantined(spool) == {}
    assert sealer._sources[""].sealed == (0, len(data), 0)


def test_frames_written_into_the_zero_tail_later_are_sealed_once(tmp_path: Path) -> None:
    """More frames written at the written end (os.pwrite into the zeros) are sealed by the next
    poll and after a restart, each once. A frame whose payload is written but whose header is
    still zero (the writer writes the header last) waits until its header is there."""
    spool = tmp_path / "spool"
    first = frames(range(5))
    path = write_segment(spool, 0, first)
    sealer = make_sealer(tmp_path, max_records=3)
    sealer.recover()
    assert sealed_ids(tmp_path / "batches") == ids(range(5))
    fd = os.open(path, os.O_WRONLY)
    try:
        second = frames(range(5, 9))
        os.pwrite(fd, second, len(first))
        sealer.seal_ready(0, force=True)
        assert sealed_ids(tmp_path / "batches") == ids(range(9))
        third = frames(range(9, 10))
        at = len(first) + len(second)
        os.pwrite(fd, third[8:], at + 8)  # the payload first: not written yet for a reader
        sealer.seal_ready(0, force=True)
        assert sealed_ids(tmp_path / "batches") == ids(range(9))
        os.pwrite(fd, third[:8], at)  # then its header
        sealer.seal_ready(0, force=True)
        assert sealed_ids(tmp_path / "batches") == ids(range(10))
        os.pwrite(fd, frames(range(10, 12)), at + len(third))
    finally:
        os.close(fd)
    make_sealer(tmp_path, max_records=3).recover()  # a restart: from the marker
    assert sealed_ids(tmp_path / "batches") == ids(range(12))
    assert quarantined(spool) == {}


def test_a_segment_before_the_last_ends_at_its_zero_tail(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A writer killed in segment 0 left its zero tail, and its restart went on in segment 1:
    segment 0 is finished at its zeros, with nothing set aside and no warning."""
    spool = tmp_path / "spool"
    write_segment(spool, 0, frames(range(6), per_frame=4))
    write_segment(spool, 1, frames(range(6, 9)), size=0)
    with caplog.at_level(logging.INFO, logger="proxy.records.sealer"):
        make_sealer(tmp_path).recover()
    assert sealed_ids(tmp_path / "batches") == ids(range(9))
    assert quarantined(spool) == {}
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert any("zero-filled" in r.getMessage() for r in caplog.records)


def test_a_torn_frame_in_the_zero_tail_of_an_older_segment_sets_aside_its_bytes_only(
    tmp_path: Path,
) -> None:
    """The killed writer had written a frame's payload but not its header: in a segment that is
    not the last, those bytes are corrupt. The quarantine file holds the frame from its (zero)
    header to the payload's last byte, not the megabyte of zeros after it."""
    spool = tmp_path / "spool"
    good = frames(range(3))
    torn = frames(range(3, 4))
    write_segment(spool, 0, good + bytes(8) + torn[8:])
    write_segment(spool, 1, frames(range(4, 6)), size=0)
    make_sealer(tmp_path).recover()
    assert sealed_ids(tmp_path / "batches") == ["req-0", "req-1", "req-2", "req-4", "req-5"]
    assert quarantined(spool) == {f"{0:016d}-{len(good)}.bad": bytes(8) + torn[8:]}


def test_corrupt_bytes_then_zeros_then_a_frame_set_aside_up_to_the_frame(tmp_path: Path) -> None:
    """A corrupt region followed, after zeros, by a valid frame (a lost page) in a segment that
    is not the last: set aside up to that frame, as before zero tails; the frame is sealed."""
    spool = tmp_path / "spool"
    good = frames(range(2))
    bad = b"\x00\x00\x00\x10garbage!" + bytes(100)
    write_segment(spool, 0, good + bad + frames(range(2, 4)))
    write_segment(spool, 1, frames(range(4, 5)), size=0)
    make_sealer(tmp_path).recover()
    assert sealed_ids(tmp_path / "batches") == ids(range(5))
    assert quarantined(spool) == {f"{0:016d}-{len(good)}.bad": bad}


def test_a_torn_frame_in_the_last_segment_waits_for_its_writer(tmp_path: Path) -> None:
    """In the last segment, nonzero bytes after a zero header are a frame being written: nothing
    is set aside and sealing waits there."""
    spool = tmp_path / "spool"
    good = frames(range(3))
    write_segment(spool, 0, good + bytes(8) + frames(range(3, 4))[8:] + frames(range(4, 5)))
    sealer = make_sealer(tmp_path)
    sealer.recover()
    assert sealed_ids(tmp_path / "batches") == ids(range(3))
    assert quarantined(spool) == {}
    assert sealer._sources[""].cursor == (0, len(good))


def test_a_header_read_mid_store_is_read_again_not_set_aside(tmp_path: Path) -> None:
    """A read is no atomic snapshot of a mapped segment: a header may be read while the writer
    stores it, and the frames after it once they are whole. In the last segment the sealer
    reads such a frame again before it sets anything aside."""
    spool = tmp_path / "spool"
    first = frames(range(2))
    write_segment(spool, 0, first + frames(range(2, 5)))
    pread: Callable[[int, int, int], bytes] = os.pread
    torn = [True]

    def mid_store(fd: int, size: int, offset: int) -> bytes:
        data = pread(fd, size, offset)
        if torn and offset <= len(first) < offset + len(data):
            torn.clear()
            at = len(first) - offset
            data = data[: at + 4] + bytes(4) + data[at + 8 :]  # its length stored, not its CRC
        return data

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(os, "pread", mid_store)
        make_sealer(tmp_path).recover()
    assert not torn
    assert sealed_ids(tmp_path / "batches") == ids(range(5))
    assert quarantined(spool) == {}


def count_reads(patch: pytest.MonkeyPatch) -> list[int]:
    """Patch os.pread to record how many bytes each call returned."""
    sizes: list[int] = []
    pread: Callable[[int, int, int], bytes] = os.pread

    def counting(fd: int, size: int, offset: int) -> bytes:
        data = pread(fd, size, offset)
        sizes.append(len(data))
        return data

    patch.setattr(os, "pread", counting)
    return sizes


def test_an_idle_poll_of_a_preallocated_segment_reads_one_small_piece(tmp_path: Path) -> None:
    """A 64 MiB preallocated segment with a few frames: a poll reads the first piece only."""
    write_segment(tmp_path / "spool", 0, frames(range(3)), size=64 << 20)
    sealer = make_sealer(tmp_path)
    sealer.recover()
    with pytest.MonkeyPatch.context() as patch:
        sizes = count_reads(patch)
        sealer.seal_ready(0, force=True)
    assert sizes == [sealer_module.READ_FIRST_PIECE_BYTES]


@pytest.mark.parametrize(("first", "piece"), [(13, 97), (1, 1), (300, 600)])
def test_a_frame_cut_by_a_piece_end_is_read_whole_with_the_next(
    tmp_path: Path, first: int, piece: int
) -> None:
    """Pieces far smaller than a frame (and than two): every frame is cut by a piece's end, is
    read again whole from its start, and every record is sealed once, nothing set aside."""
    spool = tmp_path / "spool"
    write_segment(spool, 0, frames(range(7), per_frame=3), size=5000)
    write_segment(spool, 1, frames(range(7, 12)))
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(sealer_module, "READ_FIRST_PIECE_BYTES", first)
        patch.setattr(sealer_module, "READ_PIECE_BYTES", piece)
        make_sealer(tmp_path).recover()
    assert sealed_ids(tmp_path / "batches") == ids(range(12))
    assert quarantined(spool) == {}


def files(root: Path) -> dict[str, bytes]:
    """Every file the sealer leaves (segments aside), by path."""
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.suffix != ".seg"
    }


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.lists(st.integers(1, 4), min_size=1, max_size=6),  # records per frame
            st.integers(0, 3000),  # zero tail
            st.lists(st.tuples(st.integers(0, 10**6), st.integers(1, 255)), max_size=2),
        ),
        min_size=1,
        max_size=3,
    ),
    st.integers(1, 700),
    st.integers(1, 9),
)
def test_zero_tails_and_piece_sizes_change_nothing_sealed(
    tmp_path_factory: pytest.TempPathFactory,
    segments: list[tuple[list[int], int, list[tuple[int, int]]]],
    piece: int,
    max_records: int,
) -> None:
    """The same frames (some with bit flips), sealed from segments with zero tails in pieces of
    any size, give byte-identical batches, marker and quarantine files to the segments without
    tails read whole: the tails are never sealed nor set aside, and resynchronising after a
    corrupt frame (docs/design/spool.md "Frames") finds the same frame."""
    contents: list[bytes] = []
    n = 0
    for per_frame, _, flips in segments:
        data = b""
        for count in per_frame:
            data += frames(range(n, n + count), per_frame=count)
            n += count
        raw = bytearray(data)
        for where, xor in flips:
            raw[where % (len(raw) - 1)] ^= xor  # never the last byte: no frame ends in a zero
        contents.append(bytes(raw))

    def seal(root: Path, tails: bool) -> dict[str, bytes]:
        for number, (data, (_, tail, _)) in enumerate(zip(contents, segments, strict=True)):
            write_segment(root / "spool", number, data, len(data) + tail if tails else 0)
        with pytest.MonkeyPatch.context() as patch:
            if tails:
                patch.setattr(sealer_module, "READ_FIRST_PIECE_BYTES", piece)
                patch.setattr(sealer_module, "READ_PIECE_BYTES", 2 * piece)
            make_sealer(root, max_records).recover()
        return files(root)

    assert seal(tmp_path_factory.mktemp("tails"), True) == seal(
        tmp_path_factory.mktemp("whole"), False
    )
