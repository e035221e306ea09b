"""The mapped spool writer (proxy/records/_spoolmap.c, MappedSpoolWriter): each record framed
straight into a preallocated, shared mapping of its segment (docs/design/spool.md, "Writers").

What a user relies on: every appended record reads back whole and in order, in the frame format
the sealer and receipts read; a plain hit's record has the exact bytes the contract's encoder
makes; a full spool refuses and counts records instead of failing; a killed writer's segment is
recovered on the next start with nothing lost; a file system that can't preallocate falls back to
the write(2) writer."""

from __future__ import annotations

import errno
import gc
import logging
import os
import signal
import subprocess
import sys
import time
import weakref
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from provenance.records import parse_record
from proxy.records import spool as spool_module
from proxy.records._spoolmap import MappedSegment
from proxy.records.emit import Attribution, RecordEncoder
from proxy.records.segments import decode_chunk, encode_frame, scan_frames
from proxy.records.spool import (
    MappedSpoolWriter,
    SpoolInUse,
    SpoolWriter,
    list_segments,
    open_spool,
    segment_name,
)

EDGE = "edge-1"
REQUEST_IDS = st.from_regex(r"[A-Za-z0-9._:+=/-]{1,40}", fullmatch=True)


def record(i: int) -> bytes:
    return b'{"n":%d,"pad":"%s"}' % (i, b"x" * (100 + i % 300))


def read_back(folder: Path) -> list[tuple[list[bytes], int, int]]:
    """Every frame of every segment, in order: (records, answers, dropped)."""
    frames = []
    for number in list_segments(folder):
        data = (folder / segment_name(number)).read_bytes()
        scan = scan_frames(data)
        assert not data[scan.end :].strip(b"\0"), "bytes after the frames that are not zero"
        for payload in scan.payloads:
            chunk = decode_chunk(payload)
            frames.append((chunk.records, chunk.served, chunk.dropped))
    return frames


def records_of(folder: Path) -> list[bytes]:
    return [r for records, _, _ in read_back(folder) for r in records]


def test_records_read_back_in_order_one_frame_each(tmp_path: Path) -> None:
    writer = open_spool(tmp_path)
    assert isinstance(writer, MappedSpoolWriter)
    assert writer.needs_flush is False
    for i in range(100):
        assert writer.append(record(i)) is True
    # Before close: the segment still has its preallocated zero tail, and already reads whole.
    assert (tmp_path / segment_name(0)).stat().st_size == 64 << 20
    assert records_of(tmp_path) == [record(i) for i in range(100)]
    writer.close()
    frames = read_back(tmp_path)
    assert frames == [([record(i)], 1, 0) for i in range(100)]
    assert (tmp_path / segment_name(0)).stat().st_size == writer.bytes_used
    assert writer.emitted == 100


def test_skipped_answers_ride_on_the_next_frame(tmp_path: Path) -> None:
    """Sampling: answers without a record are counted in the next frame's counters line, as
    the write(2) writer's chunks carry them (docs/design/spool.md, "Counters")."""
    writer = open_spool(tmp_path)
    writer.append(record(0))
    writer.skip()
    writer.skip()
    writer.append(record(1))
    writer.append(record(2))
    writer.close()
    assert read_back(tmp_path) == [([record(0)], 1, 0), ([record(1)], 3, 0), ([record(2)], 1, 0)]
    assert writer.sampled_out == 2


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    request_id=REQUEST_IDS,
    now_ms=st.integers(946684800000, 4102444799999),
    fraction=st.floats(0.0, 0.999),
    status=st.integers(200, 599),
    sent=st.integers(0, 2**53 - 1),
    attributed=st.booleans(),
    sample_rate=st.sampled_from(["1", "0.5", "0.001"]),
)
def test_a_hits_record_has_the_encoders_exact_bytes(
    tmp_path_factory: pytest.TempPathFactory,
    request_id: str,
    now_ms: int,
    fraction: float,
    status: int,
    sent: int,
    attributed: bool,
    sample_rate: str,
) -> None:
    """append_hit writes what RecordEncoder.encode_hit makes (the contract's canonical bytes,
    tests/unit/test_record_emit.py), timestamps included, to the millisecond."""
    now_s = (now_ms + fraction) / 1000
    encoder = RecordEncoder(EDGE, sample_rate)
    attribution = Attribution("sha256:" + "ab" * 32, "creator-1", "sha256:" + "cd" * 32)
    template = encoder.hit_template(status, sent, attribution if attributed else None, "/k?q=1")
    folder = tmp_path_factory.mktemp("spool")
    writer = open_spool(folder)
    assert isinstance(writer, MappedSpoolWriter)
    writer.append_hit(template, now_s, request_id)
    writer.append_hit(template, now_s + 0.0005, request_id)  # the formatted ms may be reused
    writer.close()
    expected = [encoder.encode_hit(template, now_s, request_id),
                encoder.encode_hit(template, now_s + 0.0005, request_id)]  # fmt: skip
    assert records_of(folder) == expected
    assert parse_record(expected[0]).request_id == request_id


def test_segments_rotate_and_are_cut_to_their_frames(tmp_path: Path) -> None:
    writer = open_spool(tmp_path, segment_bytes=4096)
    for i in range(200):
        assert writer.append(record(i))
    numbers = list_segments(tmp_path)
    assert len(numbers) > 5 and writer.segments == len(numbers)
    for number in numbers[:-1]:  # the sealer reads finished segments to their end
        data = (tmp_path / segment_name(number)).read_bytes()
        assert scan_frames(data).end == len(data) <= 4096
    writer.close()
    assert records_of(tmp_path) == [record(i) for i in range(200)]
    assert writer.bytes_used == sum((tmp_path / segment_name(n)).stat().st_size for n in numbers)


def test_a_record_larger_than_a_segment_gets_a_segment_of_its_own(tmp_path: Path) -> None:
    big = b'{"big":"' + b"y" * 9000 + b'"}'
    writer = open_spool(tmp_path, segment_bytes=4096)
    writer.append(record(0))
    assert writer.append(big)
    writer.append(record(1))
    writer.close()
    assert records_of(tmp_path) == [record(0), big, record(1)]


def test_full_spool_refuses_counts_and_recovers_when_the_sealer_frees_space(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """docs/design/spool.md "Full spool": refused records are counted (dropped) and the answers
    they stood for ride on the next written frame; space the sealer frees is noticed."""
    monkeypatch.setattr(spool_module, "USAGE_RECOUNT_S", 0.0)
    writer = open_spool(tmp_path, segment_bytes=4096, max_bytes=10_000)
    accepted = 0
    for i in range(200):
        accepted += writer.append(record(i))
    assert 0 < accepted < 200
    assert writer.dropped == 200 - accepted
    assert writer.full and writer.bytes_used <= 10_000
    # The sealer consumed and deleted every finished segment.
    for number in list_segments(tmp_path)[:-1]:
        (tmp_path / segment_name(number)).unlink()
    assert writer.append(record(999))
    writer.close()
    frames = read_back(tmp_path)
    assert frames[-1] == ([record(999)], 1 + 200 - accepted, 200 - accepted)


def test_full_is_said_before_any_record_is_refused(tmp_path: Path) -> None:
    """The reject policy asks ``full`` before it serves: it must turn True while the largest
    record still fits, so no answer goes out that its record can't follow."""
    writer = open_spool(tmp_path, segment_bytes=4096, max_bytes=10_000, full_policy="reject")
    appended = 0
    while not writer.full:
        assert writer.append(b'{"big":"' + b"z" * 1090 + b'"}')  # the largest records
        appended += 1
    assert appended >= 5 and writer.dropped == 0
    assert writer.max_bytes - writer.bytes_used < spool_module.ROOM_FOR_A_RECORD


def test_usage_follows_the_folder_as_the_sealer_deletes(tmp_path: Path) -> None:
    """cachet_spool_bytes and cachet_spool_segments: recounted on every new segment."""
    writer = open_spool(tmp_path, segment_bytes=4096)
    for i in range(40):
        writer.append(record(i))
    for number in list_segments(tmp_path)[:-1]:
        (tmp_path / segment_name(number)).unlink()
    for i in range(40, 60):
        writer.append(record(i))
    on_disk = [(tmp_path / segment_name(n)).stat().st_size for n in list_segments(tmp_path)]
    assert isinstance(writer, MappedSpoolWriter)
    assert writer.segments == len(on_disk)
    assert writer.bytes_used == sum(on_disk[:-1]) + writer._mapped.offset
    writer.close()


def test_a_full_disk_at_start_refuses_records_instead_of_failing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def no_space(fd: int, offset: int, length: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    real = os.posix_fallocate
    monkeypatch.setattr(os, "posix_fallocate", no_space)
    with caplog.at_level(logging.WARNING):
        writer = open_spool(tmp_path, full_policy="reject")
    assert isinstance(writer, MappedSpoolWriter) and "cannot preallocate" in caplog.text
    full_while_no_space = writer.full
    assert full_while_no_space and writer.append(record(0)) is False and writer.dropped == 1
    monkeypatch.setattr(os, "posix_fallocate", real)
    writer._allocate_at = 0.0
    assert not writer.full
    assert writer.append(record(1))
    writer.close()
    assert read_back(tmp_path) == [([record(1)], 2, 1)]


def test_a_full_disk_at_start_keeps_the_recovered_segments_frames(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The last segment held frames not yet sealed when the proxy restarted on a full disk:
    the segment the writer opens once space is back is a new one, never that one emptied."""
    first = open_spool(tmp_path)
    first.append(record(0))
    first.close()

    def no_space(fd: int, offset: int, length: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    real = os.posix_fallocate
    monkeypatch.setattr(os, "posix_fallocate", no_space)
    writer = open_spool(tmp_path)
    assert isinstance(writer, MappedSpoolWriter)
    assert writer.append(record(1)) is False
    monkeypatch.setattr(os, "posix_fallocate", real)
    writer._allocate_at = 0.0
    assert writer.append(record(2))
    writer.close()
    assert records_of(tmp_path) == [record(0), record(2)]
    assert writer.bytes_used == sum(
        (tmp_path / segment_name(n)).stat().st_size for n in list_segments(tmp_path)
    )


def test_only_file_systems_that_reserve_blocks_are_mapped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On btrfs, ZFS, NFS... a store into a preallocated mapping can still find no space
    (SIGBUS): those get the write(2) writer unless CACHET_SPOOL_MAPPED=1 asks."""
    monkeypatch.setattr(spool_module, "file_system_type", lambda path: "btrfs")
    assert isinstance(open_spool(tmp_path / "a", environ={}), SpoolWriter)
    forced = open_spool(tmp_path / "b", environ={"CACHET_SPOOL_MAPPED": "1"})
    assert isinstance(forced, MappedSpoolWriter)
    forced.close()
    monkeypatch.setattr(spool_module, "file_system_type", lambda path: "ext4")
    assert isinstance(open_spool(tmp_path / "c", environ={}), MappedSpoolWriter)


def test_the_file_system_of_a_path_is_its_deepest_mount() -> None:
    mountinfo = (
        "22 1 8:1 / / rw - ext4 /dev/sda rw\n"
        "30 22 0:5 / /mnt/my\\040disk rw - btrfs /dev/sdb rw\n"
        "31 22 0:6 / /mnt rw shared:1 - xfs /dev/sdc rw\n"
        "32 31 0:7 / /mnt rw - tmpfs tmpfs rw\n"
    )
    kind = spool_module.file_system_type
    assert kind(Path("/mnt/my disk/spool"), mountinfo) == "btrfs"
    assert kind(Path("/mnt/other"), mountinfo) == "tmpfs"  # mounted over /mnt later
    assert kind(Path("/mntx"), mountinfo) == "ext4"
    assert kind(Path("/"), "garbage\n") is None


KILLED_WRITER = """
import os, sys
from pathlib import Path
from proxy.records.spool import open_spool
writer = open_spool(Path(sys.argv[1]))
for i in range(10):
    writer.append(b'{"n":%d}' % i)
os._exit(0)  # as SIGKILL: no close(), no finalizer; the page cache keeps the frames
"""


def test_a_killed_writers_segment_is_recovered_with_nothing_lost(tmp_path: Path) -> None:
    """A writer that never closed leaves its zero-filled preallocation; the next open truncates
    it to its frames without setting anything aside, and appends in a new segment after it."""
    subprocess.run([sys.executable, "-c", KILLED_WRITER, str(tmp_path)], check=True)
    assert (tmp_path / segment_name(0)).stat().st_size == 64 << 20  # frames, then zeros
    second = open_spool(tmp_path)
    assert not (tmp_path / "quarantine").exists()
    frames = sum(len(encode_frame(b'{"n":%d}' % i)) for i in range(10))
    assert (tmp_path / segment_name(0)).stat().st_size == frames
    second.append(b'{"n":10}')
    second.close()
    assert list_segments(tmp_path) == [0, 1]
    assert records_of(tmp_path) == [b'{"n":%d}' % i for i in range(11)]


def test_a_second_writer_of_a_live_spool_is_refused(tmp_path: Path) -> None:
    """Its recovery would truncate the live writer's segment under it: records already answered
    lost, and a store past the new end of file a SIGBUS. The folder's lock refuses it before
    it touches anything."""
    live = open_spool(tmp_path)
    live.append(record(0))
    for environ in ({}, {"CACHET_SPOOL_MAPPED": "0"}):
        with pytest.raises(SpoolInUse, match="in use by another process"):
            open_spool(tmp_path, environ=environ)
    live.append(record(1))
    live.close()
    assert records_of(tmp_path) == [record(0), record(1)]
    open_spool(tmp_path).close()  # free again once the live one closed


def test_a_writer_dropped_without_close_is_collected_and_cut(tmp_path: Path) -> None:
    """The segment holds its writer's callback (a cycle): the collector frees both, and the
    finalizer cuts the segment to its frames and lets the lock go."""
    writer = open_spool(tmp_path)
    writer.append(record(0))
    gone = weakref.ref(writer)
    del writer
    gc.collect()
    assert gone() is None
    assert (tmp_path / segment_name(0)).stat().st_size == len(encode_frame(record(0)))
    open_spool(tmp_path).close()


def test_a_frame_torn_before_its_header_is_set_aside(tmp_path: Path) -> None:
    """The payload is written before the header: a kill between the two leaves a zero header
    and payload bytes, which recovery sets aside (the bytes up to the last nonzero one)."""
    frames = encode_frame(record(0)) + encode_frame(record(1))
    torn = record(2)[:9]
    data = frames + bytes(8) + torn + bytes(5000)
    (tmp_path / segment_name(0)).write_bytes(data)
    writer = open_spool(tmp_path)
    writer.append(record(3))
    writer.close()
    assert records_of(tmp_path) == [record(0), record(1), record(3)]
    aside = list((tmp_path / "quarantine").iterdir())
    assert [p.read_bytes() for p in aside] == [bytes(8) + torn]


def test_disk_full_refuses_records_until_a_segment_can_be_allocated(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """No SIGBUS, no exception into the request: a segment that can't be preallocated makes the
    spool refuse (and count) records, and the writer tries again later."""
    writer = open_spool(tmp_path, segment_bytes=4096)
    assert isinstance(writer, MappedSpoolWriter)
    real = os.posix_fallocate

    def no_space(fd: int, offset: int, length: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "posix_fallocate", no_space)
    with caplog.at_level(logging.WARNING):
        results = [writer.append(record(i)) for i in range(60)]
    assert not all(results) and "cannot preallocate" in caplog.text
    refused = results.count(False)
    assert writer.dropped == refused
    monkeypatch.setattr(os, "posix_fallocate", real)
    monkeypatch.setattr(spool_module, "ALLOCATE_RETRY_S", 0.0)
    writer._allocate_at = 0.0
    assert writer.append(record(100))
    writer.close()
    written = records_of(tmp_path)
    assert written == [record(i) for i, ok in enumerate(results) if ok] + [record(100)]
    assert read_back(tmp_path)[-1][1:] == (1 + refused, refused)


def test_no_preallocation_falls_back_to_write_calls(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def unsupported(fd: int, offset: int, length: int) -> None:
        raise OSError(errno.EOPNOTSUPP, os.strerror(errno.EOPNOTSUPP))

    monkeypatch.setattr(os, "posix_fallocate", unsupported)
    with caplog.at_level(logging.WARNING):
        writer = open_spool(tmp_path)
    assert isinstance(writer, SpoolWriter) and writer.needs_flush
    assert "cannot preallocate" in caplog.text
    writer.append(record(0))
    writer.close()
    assert records_of(tmp_path) == [record(0)]


def test_the_environment_can_ask_for_write_calls(tmp_path: Path) -> None:
    writer = open_spool(tmp_path, environ={"CACHET_SPOOL_MAPPED": "0"})
    assert isinstance(writer, SpoolWriter)
    writer.close()


def test_a_write_spool_left_by_an_older_version_is_continued(tmp_path: Path) -> None:
    old = SpoolWriter(tmp_path)
    old.open()
    old.append(record(0))
    old.append(record(1))
    old.close()
    writer = open_spool(tmp_path)
    assert isinstance(writer, MappedSpoolWriter)
    writer.append(record(2))
    writer.close()
    assert records_of(tmp_path) == [record(0), record(1), record(2)]


def test_bad_input_is_refused_with_a_clear_error(tmp_path: Path) -> None:
    writer = open_spool(tmp_path)
    assert isinstance(writer, MappedSpoolWriter)
    template = RecordEncoder(EDGE, "1").hit_template(200, 10, None, "/k")
    with pytest.raises(TypeError):
        writer.append("not bytes")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"1\.\.1048576"):
        writer.append(b"")
    with pytest.raises(ValueError, match=r"1\.\.1048576"):
        writer.append(b"x" * ((1 << 20) + 1))
    with pytest.raises(ValueError, match="escaping"):
        writer.append_hit(template, 1.7e9, 'a"b')
    with pytest.raises(ValueError, match="escaping"):
        writer.append_hit(template, 1.7e9, "caf\u00e9")
    for now_s in (-1.0, float("nan"), float("inf"), 1e12):
        with pytest.raises(ValueError, match="1970 to 9999"):
            writer.append_hit(template, now_s, "id")
    with pytest.raises(TypeError):
        writer.append_hit((b"a", b"b"), 1.7e9, "id")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        writer.append_hit(template, "17", "id")  # type: ignore[arg-type]
    writer.append(record(0))
    writer.close()
    assert records_of(tmp_path) == [record(0)]  # nothing half-written by the refusals


def test_the_segment_type_on_its_own() -> None:
    """Unmapped, a segment has no room: appends go to on_full, else are refused and counted."""
    calls: list[int] = []

    def no_room(wanted: int) -> bool:
        calls.append(wanted)
        return False

    segment = MappedSegment(on_full=no_room)
    assert segment.append(b"{}") is False
    assert calls == [8 + 2] and segment.dropped == 1 and segment.wanted == 10
    with pytest.raises(TypeError):
        MappedSegment(on_full=42)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        segment.limit = 5  # beyond the (empty) mapping


def test_the_populating_thread_takes_no_signals(tmp_path: Path) -> None:
    """Signals stay the main thread's, where Python handles them (a SIGTERM delivered to the
    writer's helper thread would interrupt nothing the proxy waits in); the main thread's own
    mask is left as it was."""
    before = set(os.listdir("/proc/self/task"))
    main_mask = signal.pthread_sigmask(signal.SIG_BLOCK, [])
    writer = open_spool(tmp_path)
    writer.append(record(0))
    helpers = set(os.listdir("/proc/self/task")) - before
    assert helpers, "the mapped writer started no thread"
    for task in helpers:
        status = Path(f"/proc/self/task/{task}/status").read_text()
        blocked = int(status.split("SigBlk:")[1].split()[0], 16)
        assert blocked & (1 << (signal.SIGTERM - 1)) and blocked & (1 << (signal.SIGINT - 1))
    assert signal.pthread_sigmask(signal.SIG_BLOCK, []) == main_mask
    writer.close()


def test_the_populating_thread_keeps_ahead_of_unaligned_appends(tmp_path: Path) -> None:
    """The helper thread keeps making the pages ahead of the written end ready however the
    records fall on page boundaries, so the event loop's stores never fault (docs/design/
    spool.md, "Durability"). madvise(2) refuses a start that is not page-aligned (EINVAL): the
    thread once kept the written end's unaligned offset as where to go on from, got EINVAL on
    its second step and stopped for good, leaving every later store to fault."""
    from proxy.records._spoolmap import POPULATE_AHEAD

    writer = open_spool(tmp_path, segment_bytes=64 << 20, max_bytes=1 << 30)
    assert isinstance(writer, MappedSpoolWriter)
    segment = writer._mapped  # the compiled segment the writer appends to
    payload = b'{"pad":"%s"}' % (b"x" * 403)  # 421-byte frames: the end is rarely page-aligned
    for _ in range(3):  # the thread must go on after it has caught up, not only once
        goal = segment.offset + POPULATE_AHEAD
        while segment.offset < goal:
            assert writer.append(payload)
        written = segment.offset
        deadline = time.monotonic() + 20
        while segment.populated < written + POPULATE_AHEAD // 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert segment.populated >= written + POPULATE_AHEAD // 2, (
            f"pages ready only up to {segment.populated}, records written up to {written}"
        )
        assert segment.populated % os.sysconf("SC_PAGESIZE") == 0
    writer.close()
