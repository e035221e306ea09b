"""proxy/records/batch_files.py: atomic writes from parts, and reading a batch file's body as a
view (docs/design/spool.md, "Files")."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from unittest import mock

from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.records.batch_files import (
    BatchCounters,
    BatchMeta,
    read_batch_body,
    read_batch_file,
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


def test_the_body_view_is_what_read_batch_file_reads(tmp_path: Path) -> None:
    meta = BatchMeta(BatchCounters(9, 7, 1), {"": (3, 40, 2)})
    with_meta, without = tmp_path / "a.batch", tmp_path / "b.batch"
    write_atomically(with_meta, [b'{"header":{}}', b"\n", meta.to_json()])
    write_atomically(without, b'{"header":{}}')
    for path in (with_meta, without):
        body, read_meta = read_batch_body(path)
        assert (bytes(body), read_meta) == read_batch_file(path)
    assert read_batch_body(with_meta)[1] == meta
