"""What tiles and entry bundles hold, read from the coordinator's database (C2SP tlog-tiles).

The log is stored as complete subtrees (``integrate``): a level-L tile is the nodes
``(8*L, n*256 ..)`` of ``log_nodes`` as they are, and an entry bundle is the leaf data of those
``log_index`` values: the signed header of a batch, the statement leaf of a closed statement
(``provenance.statement_leaves``), whichever table holds the index. The ``Store`` interface
reads nodes by id and batches one at a time with their records (``batch_at``: a batch's records
are up to megabytes), so this module reads ranges itself with portable SQL (``?`` placeholders,
numbered on PostgreSQL) on a connection of its own that only reads (``open_tile_source``).

A tile is produced only for a tree size the latest checkpoint covers: nodes and batches up to it
are committed and never change, so every tile read here is final. An entry bundle is checked
against the level-0 hashes before it is returned: a stored header that does not hash to its leaf
is a broken database, never published. (Entries are assembled from the stored canonical header
and base64 signature without re-encoding: RFC 8785 through ``canonicalize`` costs ~100 µs each.)
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from billing.config import CoordinatorConfig
from provenance.merkle import leaf_hash
from provenance.statement_leaves import StatementLeaf, statement_leaf_data
from provenance.tiles import Tile, encode_bundle, log_entry_from_canonical, pack_tile

Fetch = Callable[[str, Sequence[Any]], Awaitable[Sequence[Sequence[Any]]]]


@dataclass(frozen=True, slots=True)
class LatestCheckpoint:
    size: int
    note: str  # the signed note, byte for byte what /v1/checkpoint serves


class TileSource:
    """Tiles, bundles and the latest checkpoint from the store's tables (read only)."""

    def __init__(self, fetch: Fetch) -> None:
        self._fetch = fetch

    async def latest_checkpoint(self) -> LatestCheckpoint | None:
        rows = await self._fetch(
            "SELECT tree_size, note FROM checkpoints ORDER BY tree_size DESC LIMIT 1", ()
        )
        return None if not rows else LatestCheckpoint(int(rows[0][0]), str(rows[0][1]))

    async def hashes(self, tile: Tile) -> list[bytes]:
        """The hashes of a level tile (for an entry bundle: its level-0 tile's)."""
        first = tile.first_node
        rows = await self._fetch(
            "SELECT node_index, hash FROM log_nodes WHERE level = ? AND node_index >= ?"
            " AND node_index < ? ORDER BY node_index",
            (tile.tree_level, first, first + tile.width),
        )
        if [int(row[0]) for row in rows] != list(range(first, first + tile.width)):
            raise RuntimeError(f"log_nodes lacks nodes of {tile.path}")
        return [bytes.fromhex(str(row[1])) for row in rows]

    async def entries(self, bundle: Tile) -> list[bytes]:
        """The log entries of an entry bundle, each checked against its leaf hash: a batch's
        canonical signed header or a statement's leaf data (``provenance.statement_leaves``)."""
        first, end = bundle.first_node, bundle.first_node + bundle.width
        by_index: dict[int, bytes] = {}
        rows = await self._fetch(
            "SELECT log_index, header_json, signature FROM batches WHERE log_index >= ?"
            " AND log_index < ?",
            (first, end),
        )
        for row in rows:
            by_index[int(row[0])] = log_entry_from_canonical(str(row[1]).encode(), str(row[2]))
        rows = await self._fetch(
            "SELECT log_index, creator, period_id, sha256 FROM statements WHERE log_index >= ?"
            " AND log_index < ?",
            (first, end),
        )
        for row in rows:
            leaf = StatementLeaf(str(row[1]), str(row[2]), str(row[3]))
            by_index[int(row[0])] = statement_leaf_data(leaf)
        if sorted(by_index) != list(range(first, end)):
            raise RuntimeError(f"no batch or statement holds some log indexes of {bundle.path}")
        entries = [by_index[index] for index in range(first, end)]
        leaves = await self.hashes(Tile(0, bundle.index, bundle.width))
        for offset, (entry, leaf_) in enumerate(zip(entries, leaves, strict=True)):
            if leaf_hash(entry) != leaf_:
                raise RuntimeError(f"the entry at log index {first + offset} does not hash to "
                                   "its leaf")  # fmt: skip
        return entries

    async def content(self, tile: Tile) -> bytes:
        """The bytes of a tile or an entry bundle."""
        if tile.level is None:
            return encode_bundle(await self.entries(tile))
        return pack_tile(await self.hashes(tile))


@contextlib.asynccontextmanager
async def open_tile_source(config: CoordinatorConfig) -> AsyncIterator[TileSource]:
    """A TileSource on a connection of its own to the database ``config`` names: SQLite beside
    a running coordinator (WAL: readers never block its writer) or PostgreSQL."""
    from billing.service import is_postgres

    if config.db is not None and is_postgres(config):
        import asyncpg

        from billing.store.postgres import pg_sql

        connection = await asyncpg.connect(config.db)
        try:

            async def fetch_pg(sql: str, params: Sequence[Any]) -> Sequence[Sequence[Any]]:
                return list(await connection.fetch(pg_sql(sql), *params))

            yield TileSource(fetch_pg)
        finally:
            await connection.close()
        return
    import aiosqlite

    path = config.sqlite_path
    if not path.is_file():  # connecting would create an empty database
        raise FileNotFoundError(f"no coordinator database at {path}")
    async with aiosqlite.connect(path, isolation_level=None) as db:
        await db.execute("PRAGMA query_only=ON")
        await db.execute("PRAGMA busy_timeout=5000")

        async def fetch_sqlite(sql: str, params: Sequence[Any]) -> Sequence[Sequence[Any]]:
            async with db.execute(sql, params) as cursor:
                return list(await cursor.fetchall())

        yield TileSource(fetch_sqlite)
