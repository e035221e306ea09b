"""`cachet coordinator export-tiles` beside a real coordinator process: the folder it writes is
a C2SP tlog-tiles log (c2sp.org/tlog-tiles) that a mirror verifies with the log's public key and
``provenance`` alone: the checkpoint's signature, the root from the tiles, one batch's entry and
its inclusion proof built from the tiles. A second run writes only what is new."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from provenance.batches import batch_log_leaf_hash
from provenance.checkpoint import Checkpoint, parse_checkpoint
from provenance.keys import SigningKey, VerifierKey, format_verifier_key, parse_verifier_key
from provenance.merkle import MerkleTree, leaf_hash, verify_inclusion
from provenance.signed_note import open_note
from provenance.tiles import TileTree, decode_bundle, parse_log_entry, unpack_tile
from tests.component.billing.fleet import Edge, body_of, signing_key
from tests.integration.conftest import REPO_ROOT
from tests.integration.test_coordinator import CoordinatorProcess, _admin_token

pytestmark = pytest.mark.integration
WAIT_S = 30.0


@pytest.fixture
def coordinator(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[CoordinatorProcess]:
    monkeypatch.setenv("CACHET_COORDINATOR_CHECKPOINT_EVERY_BATCHES", "1")
    process = CoordinatorProcess(tmp_path / "data")
    yield process
    process.stop()


def _export(data: Path, out: Path) -> dict[str, int]:
    done = subprocess.run(
        [sys.executable, "-m", "cachet", "coordinator", "export-tiles", "--data", str(data),
         "--out", str(out), "--json"],
        cwd=REPO_ROOT, capture_output=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    result: dict[str, int] = json.loads(done.stdout)
    return result


def _push(coordinator: CoordinatorProcess, edge: Edge, batches: int) -> list[bytes]:
    leaves = []
    for _ in range(batches):
        batch = edge.seal(count=2)
        coordinator.call("POST", "/v1/batches", body_of(batch))
        leaves.append(batch_log_leaf_hash(batch.header, batch.signature))
    return leaves


def _wait_for_checkpoint(coordinator: CoordinatorProcess, key: VerifierKey, size: int) -> None:
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        note = coordinator.call("GET", "/v1/checkpoint")
        if parse_checkpoint(open_note(note, [key])).size == size:
            return
        time.sleep(0.05)
    raise AssertionError(f"no checkpoint of size {size}")


def _mirror_checkpoint(out: Path, key: VerifierKey) -> Checkpoint:
    """tlog-checkpoint: the note at <prefix>/checkpoint, signed by the log key."""
    return parse_checkpoint(open_note((out / "checkpoint").read_bytes(), [key]))


def test_an_exported_log_verifies_from_its_files_and_the_log_key(
    coordinator: CoordinatorProcess, tmp_path: Path
) -> None:
    token = _admin_token(coordinator.data)
    coordinator.start()
    enrolment = json.loads(coordinator.call("POST", "/v1/admin/enrolment-tokens", token=token))
    edge = Edge("edge-tiles", signing_key("edge-tiles"), epoch=datetime.now(UTC))
    enrol = {"token": enrolment["token"], "edge": edge.name, "verifier_key": edge.verifier}
    coordinator.call("POST", "/v1/edges/enrol", json.dumps(enrol).encode())
    key = parse_verifier_key(coordinator.call("GET", "/v1/log/key").decode())
    sent = _push(coordinator, edge, 300)
    _wait_for_checkpoint(coordinator, key, 300)

    out = tmp_path / "mirror"
    result = _export(coordinator.data, out)  # beside the running coordinator
    assert result == {"previous_size": 0, "size": 300, "tiles_written": 3, "bundles_written": 2}

    # From here on: the folder, the log key and provenance/ only.
    checkpoint = _mirror_checkpoint(out, key)
    assert checkpoint.size == 300
    assert (out / "checkpoint").read_bytes() == coordinator.call("GET", "/v1/checkpoint")
    # level 0 holds the leaf hashes: 256 in the full tile 000, 44 in the partial tile 001
    leaves = unpack_tile((out / "tile/0/000").read_bytes(), 256)
    leaves += unpack_tile((out / "tile/0/001.p/44").read_bytes(), 44)
    assert MerkleTree(leaves).root() == checkpoint.root_hash
    assert sorted(leaves) == sorted(sent)
    # level 1: the root of the first 256 leaves
    assert (out / "tile/1/000.p/1").read_bytes() == MerkleTree(leaves[:256]).root()
    tree = TileTree(lambda t: unpack_tile((out / t.path).read_bytes(), t.width), checkpoint.size)
    assert tree.root() == checkpoint.root_hash

    # one batch: its entry is its signed header, hashing to its leaf; its proof from the tiles
    target = edge.sent[123]
    index = leaves.index(batch_log_leaf_hash(target.header, target.signature))
    tile_path = "tile/entries/000" if index < 256 else "tile/entries/001.p/44"
    bundle = decode_bundle((out / tile_path).read_bytes(), 256 if index < 256 else 44)
    entry = bundle[index % 256]
    assert parse_log_entry(entry) == (target.header, target.signature)
    proof = tree.inclusion_proof(index)
    verify_inclusion(leaf_hash(entry), index, checkpoint.size, proof, checkpoint.root_hash)
    served = json.loads(
        coordinator.call("GET", f"/v1/log/proof/inclusion?leaf_index={index}&tree_size=300")
    )
    assert [bytes.fromhex(h) for h in served["proof"]] == proof

    # a second run writes only what the newer checkpoint adds
    full_tile = (out / "tile/0/000").stat()
    _push(coordinator, edge, 20)
    _wait_for_checkpoint(coordinator, key, 320)
    again = _export(coordinator.data, out)
    assert again == {"previous_size": 300, "size": 320, "tiles_written": 1, "bundles_written": 1}
    assert (out / "tile/0/000").stat().st_ino == full_tile.st_ino
    assert (out / "tile/0/001.p/64").stat().st_size == 64 * 32
    checkpoint = _mirror_checkpoint(out, key)
    tree = TileTree(lambda t: unpack_tile((out / t.path).read_bytes(), t.width), checkpoint.size)
    assert checkpoint.size == 320 and tree.root() == checkpoint.root_hash
    (tmp_path / "a-file").write_text("x")
    assert "a-file" in _run_failing(coordinator.data, tmp_path / "a-file")


def _run_failing(data: Path, out: Path) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "cachet", "coordinator", "export-tiles", "--data", str(data),
         "--out", str(out)],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    return lines[0]


def test_export_tiles_fails_with_one_line(tmp_path: Path) -> None:
    data = tmp_path / "data"
    assert "no log key at" in _run_failing(data, tmp_path / "out")
    data.mkdir()
    key = SigningKey("cachet.local/log", bytes(32)).verifier
    (data / "log-key.pub").write_text(format_verifier_key(key) + "\n")
    assert "no coordinator database at" in _run_failing(data, tmp_path / "out")
    assert not (data / "coordinator.db").exists()  # looking did not create one
    (data / "log-key.pub").write_text("not a key\n")
    assert "log-key.pub" in _run_failing(data, tmp_path / "out")
