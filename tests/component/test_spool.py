"""SpoolWriter: appends, rotation, the full policy, and recovery of torn or corrupt tails."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from proxy.records.segments import decode_chunk, encode_frame, scan_frames
from proxy.records.spool import SpoolWriter, list_segments, segment_name


def payload(i: int) -> bytes:
    return b'{"n":%d,"pad":"%s"}' % (i, b"x" * (i % 7))


def read_all(directory: Path) -> list[bytes]:
    out: list[bytes] = []
    for number in list_segments(directory):
        for frame in scan_frames((directory / segment_name(number)).read_bytes()).payloads:
            out += decode_chunk(frame).records
    return out


def test_flush_writes_appended_records_and_rotates(tmp_path: Path) -> None:
    spool = SpoolWriter(tmp_path, segment_bytes=200)
    spool.open()
    for i in range(30):
        assert spool.append(payload(i))
        if i % 3 == 2:
            spool.flush()
    spool.close()
    assert read_all(tmp_path) == [payload(i) for i in range(30)]
    assert len(list_segments(tmp_path)) > 1


def test_nothing_reaches_disk_before_flush(tmp_path: Path) -> None:
    spool = SpoolWriter(tmp_path)
    spool.open()
    spool.append(payload(1))
    assert read_all(tmp_path) == []
    spool.flush()
    assert read_all(tmp_path) == [payload(1)]
    spool.close()


@pytest.mark.parametrize("policy", ["drop", "reject"])
def test_full_spool_refuses_and_counts(tmp_path: Path, policy: str) -> None:
    spool = SpoolWriter(tmp_path, max_bytes=100, full_policy=policy)
    spool.open()
    accepted = 0
    for i in range(20):
        accepted += spool.append(payload(i))
        spool.flush()
    assert 0 < accepted < 20
    assert spool.dropped == 20 - accepted
    assert spool.bytes_used >= 100
    for number in list_segments(tmp_path):  # the sealer consumed everything
        (tmp_path / segment_name(number)).unlink()
    spool.flush()
    assert spool.append(payload(99))
    spool.close()


def test_unknown_policy_is_a_bug() -> None:
    with pytest.raises(ValueError):
        SpoolWriter(Path("x"), full_policy="block")


def test_torn_tail_at_every_offset_is_quarantined(tmp_path: Path) -> None:
    """Truncate the last frame at every byte: all complete frames kept, the torn one set aside
    up to its last nonzero byte (zeros are what a mapped writer's unwritten preallocation holds,
    so a tail of zeros alone is truncated with nothing set aside)."""
    frames = [encode_frame(payload(i)) for i in range(3)]
    whole = b"".join(frames)
    good = len(whole) - len(frames[-1])
    for cut in range(good + 1, len(whole)):
        folder = tmp_path / str(cut)
        folder.mkdir()
        (folder / segment_name(0)).write_bytes(whole[:cut])
        spool = SpoolWriter(folder)
        spool.open()
        spool.append(payload(7))
        spool.close()
        assert read_all(folder) == [payload(0), payload(1), payload(7)]
        torn = whole[good:cut].rstrip(b"\0")
        aside = sorted((folder / "quarantine").glob("*"))
        assert [p.read_bytes() for p in aside] == ([torn] if torn else [])


def test_corrupt_middle_frame_starts_a_new_segment(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    raw = bytearray(b"".join(encode_frame(payload(i)) for i in range(3)))
    raw[12] ^= 0x40  # inside the first payload
    (tmp_path / segment_name(0)).write_bytes(bytes(raw))
    spool = SpoolWriter(tmp_path)
    with caplog.at_level(logging.WARNING):
        spool.open()
    spool.append(payload(9))
    spool.close()
    assert "corrupt frame" in caplog.text
    assert (tmp_path / segment_name(0)).read_bytes() == bytes(raw)  # left for the sealer
    assert scan_frames((tmp_path / segment_name(1)).read_bytes()).payloads == [payload(9)]


def test_each_start_appends_to_a_new_segment_after_the_last(tmp_path: Path) -> None:
    """A writer never appends to a segment an earlier run wrote: its frames may not all have
    survived a machine crash (the sealer does not fsync them), and new records after what is
    left could land where a batch already counts as sealed (docs/design/spool.md)."""
    for round_ in range(3):
        spool = SpoolWriter(tmp_path)
        spool.open()
        spool.append(payload(round_))
        spool.close()
    assert read_all(tmp_path) == [payload(0), payload(1), payload(2)]
    assert list_segments(tmp_path) == [0, 1, 2]
