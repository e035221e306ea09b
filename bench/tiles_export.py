"""Time `export-tiles` (C2SP tlog-tiles) on a log of N batches, with SQLite.

Run: .venv/bin/python -m bench.tiles_export [--leaves N] [--grow N]

Builds (not timed) a coordinator database whose log holds N signed batch headers: the schema by
``SqliteStore.open``, then ``batches`` and ``log_nodes`` rows and one signed checkpoint written
with plain sqlite3 (ingest would take minutes and is not what is measured). Then times a first
export into an empty folder, a second with nothing new, and one after ``--grow`` more leaves, and
prints wall and CPU seconds, files written and leaves per second; then what serving one tile or
bundle costs the coordinator per request (connection, range read, checks).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import sqlite3
import tempfile
import time
from pathlib import Path

from billing.config import CoordinatorConfig
from billing.log.integrate import EMPTY_LOG, LogState, integrate, root_of
from billing.log.tile_source import open_tile_source
from billing.log.tiles_export import ExportResult, export_tiles
from billing.store.sqlite import SqliteStore
from provenance.batches import (
    BatchHeader,
    batch_log_leaf_hash,
    header_canonical_bytes,
)
from provenance.checkpoint import Checkpoint, format_checkpoint
from provenance.keys import SigningKey
from provenance.signed_note import sign_note
from provenance.tiles import Tile

ORIGIN = "cachet.local/log"


def _headers(first: int, count: int, key: SigningKey) -> list[tuple[BatchHeader, bytes]]:
    out = []
    for seq in range(first, first + count):
        header = BatchHeader(
            edge="edge-bench", key_id=key.key_id.hex(), seq=seq, prev="0" * 64, count=1000,
            root=hashlib.sha256(seq.to_bytes(8, "big")).hexdigest(),
            first_ts="2026-11-27T12:00:00.000Z", last_ts="2026-11-27T12:00:01.000Z",
        )  # fmt: skip
        out.append((header, key.sign(header_canonical_bytes(header))))
    return out


def _append(db: sqlite3.Connection, state: LogState, count: int, key: SigningKey) -> LogState:
    signed = _headers(state.size, count, key)
    leaves = [batch_log_leaf_hash(h, s) for h, s in signed]
    new_state, nodes = integrate(state, leaves)
    db.executemany(
        "INSERT INTO batches (batch_id, edge, seq, header_json, signature, record_count,"
        " first_ts, last_ts, received_at, log_index)"
        " VALUES (?,?,?,?,?,?,?,?,?,?)",
        [
            (leaf.hex(), h.edge, h.seq, header_canonical_bytes(h).decode(),
             base64.b64encode(s).decode(), h.count, h.first_ts, h.last_ts, h.first_ts,
             state.size + i)
            for i, ((h, s), leaf) in enumerate(zip(signed, leaves, strict=True))
        ],
    )  # fmt: skip
    db.executemany(
        "INSERT INTO log_nodes (level, node_index, hash) VALUES (?, ?, ?)",
        [(level, index, value.hex()) for (level, index), value in nodes],
    )
    root = root_of(new_state)
    note = sign_note(format_checkpoint(Checkpoint(ORIGIN, new_state.size, root)), [key])
    db.execute(
        "INSERT INTO checkpoints VALUES (?, ?, ?, ?)",
        (new_state.size, root.hex(), note, "2026-11-27T12:00:00.000Z"),
    )
    db.commit()
    return new_state


async def _timed(config: CoordinatorConfig, out: Path, key: SigningKey) -> None:
    wall, cpu = time.perf_counter(), time.process_time()
    async with open_tile_source(config) as source:
        result: ExportResult = await export_tiles(source, out, key.verifier)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    leaves = result.size - result.previous_size
    rate = f"{leaves / wall:,.0f} leaves/s" if leaves else "-"
    print(f"  {result.previous_size:>9,} -> {result.size:>9,}: {result.tiles:5} tiles, "
          f"{result.bundles:5} bundles, wall {wall:6.2f} s, cpu {cpu:6.2f} s, {rate}")  # fmt: skip


async def _serve_costs(config: CoordinatorConfig, size: int, rounds: int = 200) -> None:
    """What a GET /tile/... costs the coordinator besides HTTP: open a read connection, read
    a tile (or a bundle, checked against its leaves), close (per request, as the handler does)."""
    last_full = size // 256 - 1
    tiles = [Tile(0, last_full), Tile(None, last_full)]
    if size >= 256 * 256:  # the first full level-1 tile exists only from 65,536 leaves
        tiles.append(Tile(1, 0))
    for tile in tiles:
        wall = time.perf_counter()
        for _ in range(rounds):
            async with open_tile_source(config) as source:
                await source.content(tile)
        wall = (time.perf_counter() - wall) / rounds
        print(f"  GET /{tile.path}: {wall * 1000:.2f} ms (connection, read, close)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--leaves", type=int, default=100_000)
    parser.add_argument("--grow", type=int, default=1_000)
    args = parser.parse_args()
    key = SigningKey(ORIGIN, bytes(32))
    with tempfile.TemporaryDirectory() as tmp:
        config, db = open_bench_db(Path(tmp))
        state, _ = build_log(db, args.leaves, key)
        out = Path(tmp) / "mirror"
        print("export-tiles:")
        asyncio.run(_timed(config, out, key))
        asyncio.run(_timed(config, out, key))
        state = _append(db, state, args.grow, key)
        asyncio.run(_timed(config, out, key))
        db.close()
        print("serving:")
        asyncio.run(_serve_costs(config, state.size))


def open_bench_db(folder: Path) -> tuple[CoordinatorConfig, sqlite3.Connection]:
    """A coordinator data folder in ``folder`` with its schema, and a plain connection to it."""
    config = CoordinatorConfig(data=str(folder / "data"))
    Path(config.data).mkdir()
    asyncio.run(_migrate(config))
    return config, sqlite3.connect(config.sqlite_path)


def build_log(
    db: sqlite3.Connection, leaves: int, key: SigningKey
) -> tuple[LogState, dict[int, bytes]]:
    """Append ``leaves`` signed batches (not timed), 50,000 at a time: the final state, and
    the root at each size reached on the way."""
    print(f"building a log of {leaves:,} batches (not timed)")
    state, roots = EMPTY_LOG, {}
    for start in range(0, leaves, 50_000):
        state = _append(db, state, min(50_000, leaves - start), key)
        roots[state.size] = root_of(state)
    return state, roots


async def _migrate(config: CoordinatorConfig) -> None:
    store = await SqliteStore.open(config.sqlite_path)
    await store.close()


if __name__ == "__main__":
    main()
