"""The log as C2SP tlog-tiles (c2sp.org/tlog-tiles), on both storage backends: the export is
verified from its files alone with ``provenance`` (checkpoint signature, root from the tiles,
entries hashing to the level-0 tiles, proofs), is incremental and atomic, refuses what it must;
the coordinator serves the same bytes at the same paths."""

from __future__ import annotations

import gzip
import re
from pathlib import Path

import pytest
import pytest_asyncio

from billing.api.app import COORDINATOR, ROUTES, build_app
from billing.api.log import TILE_ROUTES
from billing.api.openapi import tile_openapi_paths
from billing.log.tile_source import open_tile_source
from billing.log.tiles_export import (
    CHECKPOINT_FILE,
    ExportError,
    ExportResult,
    export_tiles,
    write_atomically,
)
from billing.service import rotate_admin_token
from provenance.batches import batch_log_leaf_hash
from provenance.checkpoint import Checkpoint, format_checkpoint, parse_checkpoint
from provenance.keys import SigningKey
from provenance.merkle import MerkleTree, leaf_hash, verify_inclusion
from provenance.signed_note import open_note, sign_note
from provenance.tiles import (
    TileTree,
    decode_bundle,
    new_tiles,
    parse_log_entry,
    tile_for,
    unpack_tile,
)
from tests.component.billing.conftest import Harness, MakeClient
from tests.component.billing.fleet import Edge, FakeClock, body_of, open_coordinator
from tests.component.billing.fleet import coordinator_config as make_config

pytestmark = pytest.mark.asyncio


@pytest_asyncio.fixture
async def harness(store_dsn: str | None, aiohttp_client: MakeClient, tmp_path: Path) -> Harness:
    """The coordinator app with the tlog-tiles routes (added here while app.ROUTES lacks them)."""
    clock = FakeClock()
    config = make_config(tmp_path / "data", db=store_dsn)
    app = build_app(lambda: open_coordinator(config, clock))
    if not any(path == "/checkpoint" for _, path, _ in ROUTES):
        for method, path, handler in TILE_ROUTES:
            app.router.add_route(method, path, handler)
    client = await aiohttp_client(app)
    token = await rotate_admin_token(client.app[COORDINATOR].store, clock())
    return Harness(client, clock, token)


async def _grow(h: Harness, edge: Edge, batches: int) -> list[bytes]:
    """Post ``batches`` batches, sequence them, sign a checkpoint; their log leaves in log
    order (the sequencer's, not necessarily the posting order)."""
    leaves = []
    for _ in range(batches):
        batch = edge.seal(count=1)
        status, answer = await h.post(body_of(batch))
        assert status == 200, answer
        leaves.append(batch_log_leaf_hash(batch.header, batch.signature))
    await h.coordinator.sequencer.flush()
    indexed = []
    for leaf in leaves:
        stored = await h.coordinator.store.find_batch(leaf.hex())
        assert stored is not None and stored.log_index is not None
        indexed.append((stored.log_index, leaf))
    return [leaf for _, leaf in sorted(indexed)]


async def _export(h: Harness, out: Path) -> ExportResult:
    async with open_tile_source(h.coordinator.config) as source:
        return await export_tiles(source, out, h.coordinator.log_verifier)


def _verify_folder(out: Path, h: Harness) -> tuple[Checkpoint, TileTree]:
    """What a mirror does with the folder and the log's public key, nothing else."""
    text = open_note((out / CHECKPOINT_FILE).read_bytes(), [h.coordinator.log_verifier])
    checkpoint = parse_checkpoint(text)
    tree = TileTree(lambda t: unpack_tile((out / t.path).read_bytes(), t.width), checkpoint.size)
    assert tree.root() == checkpoint.root_hash
    for index in range(0, checkpoint.size, 256):
        tile = tile_for(0, index // 256, checkpoint.size)
        bundle = decode_bundle((out / tile.entries_bundle().path).read_bytes(), tile.width)
        hashes = unpack_tile((out / tile.path).read_bytes(), tile.width)
        assert [leaf_hash(entry) for entry in bundle] == hashes  # "Log entries"
    return checkpoint, tree


async def test_an_export_verifies_from_its_files_alone(harness: Harness, tmp_path: Path) -> None:
    edge = await harness.enrol("edge-t")
    leaves = await _grow(harness, edge, 300)
    out = tmp_path / "mirror"
    result = await _export(harness, out)
    assert result == ExportResult(0, 300, tiles=3, bundles=2)  # 0/000, 0/001.p/44, 1/000.p/1
    checkpoint, tree = _verify_folder(out, harness)
    assert checkpoint.size == 300
    assert (await (await harness.client.get("/v1/checkpoint")).text()) == (
        out / CHECKPOINT_FILE
    ).read_text()
    assert unpack_tile((out / "tile/0/000").read_bytes(), 256) == leaves[:256]
    assert (out / "tile/0/001.p/44").stat().st_size == 44 * 32
    assert (out / "tile/1/000.p/1").read_bytes() == MerkleTree(leaves[:256]).root()
    # one batch: its entry is its signed header, its inclusion proof comes from the tiles
    entries = decode_bundle((out / "tile/entries/001.p/44").read_bytes(), 44)
    header, signature = parse_log_entry(entries[261 - 256])
    sent = {(b.header, b.signature) for b in edge.sent}
    assert (header, signature) in sent and batch_log_leaf_hash(header, signature) == leaves[261]
    proof = tree.inclusion_proof(261)
    verify_inclusion(leaf_hash(entries[5]), 261, 300, proof, checkpoint.root_hash)
    assert proof == await harness.coordinator.inclusion_proof(261, 300)


async def test_a_second_export_writes_only_what_is_new(harness: Harness, tmp_path: Path) -> None:
    edge = await harness.enrol("edge-i")
    await _grow(harness, edge, 300)
    out = tmp_path / "mirror"
    await _export(harness, out)
    full = (out / "tile/0/000").stat()
    await _grow(harness, edge, 260)
    result = await _export(harness, out)
    added = list(new_tiles(300, 560))  # 0/001, 0/002.p/48, 1/000.p/2
    assert result == ExportResult(300, 560, tiles=len(added), bundles=2)
    assert (out / "tile/0/000").stat().st_ino == full.st_ino  # not rewritten
    assert not (out / "tile/0/001.p").exists()  # superseded by the full tile 0/001
    assert not (out / "tile/entries/001.p").exists()
    assert (out / "tile/1/000.p/1").exists()  # still needed by clients of the old checkpoint
    checkpoint, _ = _verify_folder(out, harness)
    assert checkpoint.size == 560
    before = (out / CHECKPOINT_FILE).stat()
    assert await _export(harness, out) == ExportResult(560, 560, tiles=0, bundles=0)
    assert (out / CHECKPOINT_FILE).stat().st_ino == before.st_ino
    assert not [p for p in out.rglob("*.tmp")]


async def test_the_empty_log_exports_its_checkpoint_only(harness: Harness, tmp_path: Path) -> None:
    out = tmp_path / "mirror"
    assert await _export(harness, out) == ExportResult(0, 0, tiles=0, bundles=0)
    assert sorted(p.name for p in out.iterdir()) == [".export-lock", CHECKPOINT_FILE]
    checkpoint, _ = _verify_folder(out, harness)
    assert checkpoint.size == 0


async def test_an_export_refuses_a_folder_of_another_log_or_a_longer_tree(
    harness: Harness, tmp_path: Path
) -> None:
    edge = await harness.enrol("edge-r")
    await _grow(harness, edge, 3)
    out = tmp_path / "mirror"
    await _export(harness, out)
    note = (out / CHECKPOINT_FILE).read_text()
    (out / CHECKPOINT_FILE).write_text(note.replace("cachet.local/log", "other.example/log", 1))
    with pytest.raises(ExportError, match=r"holds log 'other\.example/log'"):
        await _export(harness, out)
    (out / CHECKPOINT_FILE).write_text(note.replace("\n3\n", "\n9\n", 1))
    with pytest.raises(ExportError, match="holds a tree of 9, the log has 3"):
        await _export(harness, out)
    (out / CHECKPOINT_FILE).write_text("not a note")
    with pytest.raises(ExportError, match="not a checkpoint note"):
        await _export(harness, out)
    # same origin, a smaller tree, but not a prefix of this log's: a fork
    forked = Checkpoint(harness.coordinator.config.log_origin, 2, bytes(32))
    other_key = SigningKey(forked.origin, bytes(range(32)))
    (out / CHECKPOINT_FILE).write_text(sign_note(format_checkpoint(forked), [other_key]))
    with pytest.raises(ExportError, match="not an extension"):
        await _export(harness, out)
    (out / CHECKPOINT_FILE).write_text(note)
    (out / "tile/0/000.p/3").write_bytes(b"short")  # a damaged folder is reported, not used
    with pytest.raises(ExportError, match=r"000\.p/3: tile of width 3 is 5 bytes"):
        await _export(harness, out)


async def test_an_export_never_publishes_a_checkpoint_its_tiles_do_not_match(
    harness: Harness, tmp_path: Path
) -> None:
    edge = await harness.enrol("edge-m")
    await _grow(harness, edge, 256)
    out = tmp_path / "mirror"
    await _export(harness, out)
    old_note = (out / CHECKPOINT_FILE).read_text()
    # the root of a tree of 257 is folded from tile/1/000.p/1 (unchanged) and tile/0/001.p/1
    tampered = bytearray((out / "tile/1/000.p/1").read_bytes())
    tampered[0] ^= 1
    write_atomically(out / "tile/1/000.p/1", bytes(tampered))
    await _grow(harness, edge, 1)
    with pytest.raises(ExportError, match="do not hash to the checkpoint's root"):
        await _export(harness, out)
    assert (out / CHECKPOINT_FILE).read_text() == old_note


async def test_an_export_refuses_a_checkpoint_the_key_does_not_sign(
    harness: Harness, tmp_path: Path
) -> None:
    stranger = SigningKey("cachet.local/log", bytes(range(32))).verifier
    async with open_tile_source(harness.coordinator.config) as source:
        with pytest.raises(ExportError, match="does not verify with the log key"):
            await export_tiles(source, tmp_path / "mirror", stranger)
    assert not (tmp_path / "mirror" / CHECKPOINT_FILE).exists()


# -- the same files over HTTP ----------------------------------------------------------------


async def test_the_coordinator_serves_the_exported_bytes(harness: Harness, tmp_path: Path) -> None:
    edge = await harness.enrol("edge-h")
    await _grow(harness, edge, 300)
    out = tmp_path / "mirror"
    await _export(harness, out)
    files = [p for p in out.rglob("*") if p.is_file() and not p.name.startswith(".")]
    assert len(files) == 6  # checkpoint, 3 tiles, 2 bundles
    for path in files:
        name = path.relative_to(out).as_posix()
        response = await harness.client.get("/" + name)
        assert response.status == 200, name
        assert await response.read() == path.read_bytes(), name
        if name == CHECKPOINT_FILE:
            assert response.headers["Content-Type"] == "text/plain; charset=utf-8"
            assert response.headers["Cache-Control"] == "no-cache"  # "mutable"
        else:
            assert response.headers["Content-Type"] == "application/octet-stream"
            cache = response.headers["Cache-Control"]
            assert ("immutable" in cache) == (".p/" not in name), name


async def test_entry_bundles_are_gzipped_when_asked(harness: Harness) -> None:
    edge = await harness.enrol("edge-z")
    await _grow(harness, edge, 5)
    plain = await harness.client.get("/tile/entries/000.p/5", headers={"Accept-Encoding": ""})
    body = await plain.read()
    assert decode_bundle(body, 5)
    zipped = await harness.client.get(
        "/tile/entries/000.p/5", headers={"Accept-Encoding": "gzip"}, auto_decompress=False
    )
    assert zipped.headers["Content-Encoding"] == "gzip"
    assert gzip.decompress(await zipped.read()) == body


@pytest.mark.parametrize(
    "path",
    [
        "/tile/0/000",  # full tile 0 needs 256 leaves: the log has 5
        "/tile/0/000.p/6",  # wider than the checkpoint's tree
        "/tile/1/000.p/1",
        "/tile/entries/001.p/1",
        "/tile/0/0",  # not canonical
        "/tile/0/x000/000.p/5",
        "/tile/0/000.p/0",
        "/tile/0/000.p/256",
        "/tile/64/000",
        "/tile/",
        "/tile/entries",
    ],
)
async def test_tiles_the_checkpoint_does_not_have_are_404(harness: Harness, path: str) -> None:
    edge = await harness.enrol("edge-n")
    await _grow(harness, edge, 5)
    assert (await harness.client.get("/tile/0/000.p/5")).status == 200
    response = await harness.client.get(path)
    assert response.status == 404, path
    if path.startswith("/tile/0"):  # the others do not even match the route
        assert await response.json() == {"error": "not-found"}


async def test_partial_tiles_of_earlier_checkpoints_are_still_served(harness: Harness) -> None:
    """ "Logs MUST serve partial tiles corresponding to tree sizes for which a checkpoint was
    produced": the tree only grows, so a narrower partial tile is a prefix of today's."""
    edge = await harness.enrol("edge-p")
    leaves = await _grow(harness, edge, 3)
    await _grow(harness, edge, 4)
    response = await harness.client.get("/tile/0/000.p/3")
    assert unpack_tile(await response.read(), 3) == leaves


async def test_openapi_describes_the_tile_routes() -> None:
    paths = tile_openapi_paths()
    assert set(paths["/checkpoint"]) == {"get"}
    assert set(paths["/tile/{tile}"]) == {"get"}
    assert [p["name"] for p in paths["/tile/{tile}"]["get"]["parameters"]] == ["tile"]


async def test_tile_routes_take_no_existing_path() -> None:
    tile_routes = {path for _, path, _ in TILE_ROUTES}
    others = {path for _, path, _ in ROUTES} - tile_routes
    assert not [p for p in others if p.startswith(("/tile/", "/checkpoint"))]
    assert {re.sub(r"\{(\w+):[^{}]*\}", r"{\1}", path) for path in tile_routes} == set(
        tile_openapi_paths()
    )
