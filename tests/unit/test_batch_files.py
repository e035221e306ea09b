"""proxy/records/batch_files.py: atomic writes from parts, and batch files of every layout: the
meta line and the batch as one gzip member (RFC 1952), the plain batch line with its meta line
after it, and the plain batch with a ``.meta`` beside it (docs/design/spool.md, "Files")."""

from __future__ import annotations

import gzip
import os
import tempfile
from pathlib import Path
from unittest import mock

from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.records.batch_files import (
    BatchCounters,
    BatchMeta,
    batch_file_parts,
    meta_path,
    read_batch_file,
    read_batch_payload,
    read_meta,
    write_atomically,
)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.binary(max_size=300), max_size=40))
def test_parts_are_written_one_after_the_other(parts: list[bytes]) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "x.batch"
        write_atomically(path, parts)
        assert path.read_bytes() == b"".join(parts)
        assert not list(Path(folder).glob("*.tmp"))


def test_more_parts_than_one_writev_takes(tmp_path: Path) -> None:
    parts = [bytes([i % 256]) * (i % 7) for i in range(3000)]
    write_atomically(tmp_path / "many.batch", parts)
    assert (tmp_path / "many.batch").read_bytes() == b"".join(parts)


def test_short_writes_resume_where_they_ended(tmp_path: Path) -> None:
    """writev(2) may write less than asked (a signal, a full disk's last blocks): the rest of
    the same part, then the parts after it, follow in order."""
    real_writev = os.writev

    def at_most_five_bytes(fd: int, buffers: list[memoryview]) -> int:
        budget, taken = 5, []
        for buffer in buffers:
            taken.append(buffer[:budget])
            budget -= len(taken[-1])
            if budget == 0:
                break
        return real_writev(fd, taken)

    parts = [b"header", b"", b"records,records", b"x", b"signature\n"]
    with mock.patch("proxy.records.batch_files.os.writev", at_most_five_bytes):
        write_atomically(tmp_path / "short.batch", parts)
    assert (tmp_path / "short.batch").read_bytes() == b"".join(parts)


BATCH = b'{"header":{"count":1},"records":[{"a":1}],"signature":"c2ln"}'
META = BatchMeta(BatchCounters(9, 7, 1), {"": (3, 40, 2), "w1": (1, 0, 0)})


def test_a_sealed_file_is_its_meta_line_then_the_batch_gzip_compressed(tmp_path: Path) -> None:
    path = tmp_path / "0000000000000000-0000000000000003-0000000000000040.batch"
    write_atomically(path, batch_file_parts([BATCH[:10], BATCH[10:]], META))
    data = path.read_bytes()
    meta_line, _, member = data.partition(b"\n")
    assert meta_line == META.to_json()
    assert gzip.decompress(member) == BATCH
    assert read_batch_file(path) == (BATCH, META)
    assert read_batch_payload(path) == (member, META)  # sent as sealed: no second compression
    assert read_meta(path) == META


def test_every_older_layout_reads_the_same(tmp_path: Path) -> None:
    plain, beside = tmp_path / "plain.batch", tmp_path / "beside.batch"
    plain.write_bytes(BATCH + b"\n" + META.to_json())
    beside.write_bytes(BATCH)
    meta_path(beside).write_bytes(META.to_json())
    for path in (plain, beside):
        assert read_batch_file(path) == (BATCH, META)
        payload, meta = read_batch_payload(path)
        assert (gzip.decompress(payload), meta) == (BATCH, META)
        assert read_meta(path) == META


def test_a_batch_that_does_not_inflate_reads_as_no_batch_with_its_meta(tmp_path: Path) -> None:
    """A flipped bit in the compressed batch: the batch then fails to parse, as a corrupt plain
    batch does (recovery and receipts refuse it with a reason), nothing raises here."""
    path = tmp_path / "bad.batch"
    write_atomically(path, batch_file_parts([BATCH], META))
    data = bytearray(path.read_bytes())
    data[-7] ^= 0x40  # the gzip trailer's CRC-32 (its last 8 bytes: CRC-32, ISIZE)
    path.write_bytes(bytes(data))
    assert read_batch_file(path) == (b"", META)
    truncated = tmp_path / "short.batch"
    truncated.write_bytes(bytes(data[:-30]))
    assert read_batch_file(truncated) == (b"", META)
