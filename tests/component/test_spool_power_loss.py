"""Power loss between the sealer and the next writer: no record lost, none sealed twice.

The sealer does not fsync spool bytes (a batch file holds its records), so what a machine crash
may undo is the spool folder's entries made since its last fsync: segments created since are
gone, segments deleted since come back (docs/design/spool.md, "Durability"). `PowerLoss` models
exactly that for the folders it watches; file bytes are kept as they are, since the tests in
test_sealer.py cover bytes lost inside a segment."""

from __future__ import annotations

from pathlib import Path

import pytest

from proxy.records import batch_files
from proxy.records import sealer as sealer_module
from proxy.records.spool import SEGMENT_SUFFIX, list_segments, open_spool
from tests.component.test_sealer import make_sealer, record, sealed_ids


class PowerLoss:
    """Each watched folder's segment names as of its last fsync (through fsync_directory)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, folders: list[Path]) -> None:
        self.durable: dict[Path, dict[str, bytes]] = {folder: {} for folder in folders}
        real = batch_files.fsync_directory

        def fsync_directory(directory: Path) -> None:
            real(directory)
            if directory in self.durable:
                self.durable[directory] = self._segments(directory)

        monkeypatch.setattr(batch_files, "fsync_directory", fsync_directory)
        monkeypatch.setattr(sealer_module, "fsync_directory", fsync_directory)

    @staticmethod
    def _segments(folder: Path) -> dict[str, bytes]:
        return {path.name: path.read_bytes() for path in folder.glob("*" + SEGMENT_SUFFIX)}

    def crash(self) -> None:
        for folder, durable in self.durable.items():
            now = self._segments(folder)
            for name in now.keys() - durable.keys():
                (folder / name).unlink()
            for name in durable.keys() - now.keys():
                (folder / name).write_bytes(durable[name])


@pytest.mark.parametrize("worker", [False, True], ids=["spool", "worker-spool"])
@pytest.mark.parametrize("mapped", ["1", "0"], ids=["mapped", "write"])
def test_restarts_with_no_traffic_then_power_loss(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mapped: str, worker: bool
) -> None:
    """Every start of a writer makes a new segment, empty until traffic comes. A batch sealed
    once the sealer's cursor has moved into such a segment names it, though nothing was read
    from it: its name must be durable before that batch is written, or a power loss lets the
    next writer number its segment below the sealed position and its records are never
    sealed."""
    spool_dir = tmp_path / "spool"
    folder = spool_dir / "w1" if worker else spool_dir
    folder.mkdir(parents=True)
    disk = PowerLoss(monkeypatch, [folder])
    environ = {"CACHET_SPOOL_MAPPED": mapped}
    sealer = make_sealer(tmp_path, max_interval_ms=200)
    writer = open_spool(folder, environ=environ)
    writer.append(record(0))
    writer.flush()
    sealer.recover()
    for i in range(1, 4):
        writer.append(record(i))
        writer.flush()
    sealer.seal_ready(0)  # read, not sealed yet: not old enough
    writer.close()
    for _ in range(2):  # the serving process restarts twice before any new request
        open_spool(folder, environ=environ).close()
    assert list_segments(folder) == [0, 1, 2]
    sealer.seal_ready(10_000)  # sealed now; the batch names the cursor, in segment 2
    disk.crash()
    writer = open_spool(folder, environ=environ)
    for i in range(100, 103):
        writer.append(record(i))
        writer.flush()
    writer.close()
    make_sealer(tmp_path).recover()
    assert sealed_ids(tmp_path / "batches") == [f"req-{i}" for i in [0, 1, 2, 3, 100, 101, 102]]


@pytest.mark.parametrize("worker", [False, True], ids=["spool", "worker-spool"])
def test_a_segment_rotated_into_then_power_loss(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, worker: bool
) -> None:
    """The write(2) writer creates its next segment when the current one is full, empty until
    the next flush; the same rule holds for it."""
    spool_dir = tmp_path / "spool"
    folder = spool_dir / "w1" if worker else spool_dir
    folder.mkdir(parents=True)
    disk = PowerLoss(monkeypatch, [folder])
    environ = {"CACHET_SPOOL_MAPPED": "0"}
    sealer = make_sealer(tmp_path, max_interval_ms=200)
    writer = open_spool(folder, environ=environ, segment_bytes=4096)
    writer.append(record(0))
    writer.flush()
    sealer.recover()
    written = 1
    writer.append(record(written))
    writer.flush()
    written += 1
    sealer.seal_ready(0)
    while list_segments(folder)[-1] == 0:
        writer.append(record(written))
        writer.flush()
        written += 1
    writer.close()
    sealer.seal_ready(10_000)
    disk.crash()
    writer = open_spool(folder, environ=environ, segment_bytes=4096)
    for i in range(100, 103):
        writer.append(record(i))
        writer.flush()
    writer.close()
    make_sealer(tmp_path).recover()
    expected = [f"req-{i}" for i in [*range(written), 100, 101, 102]]
    assert sealed_ids(tmp_path / "batches") == expected
