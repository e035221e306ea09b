"""The log's public, read-only endpoints: checkpoint, key, proofs, receipts, and the log as
C2SP tlog-tiles (``/checkpoint``, ``/tile/...``: the same files ``export-tiles`` writes)."""

from __future__ import annotations

from aiohttp import web

from billing.api.common import coordinator_of, query_int
from billing.errors import NotFoundError
from billing.log.tile_source import open_tile_source
from provenance.errors import FormatError
from provenance.keys import format_verifier_key
from provenance.receipts import format_receipt
from provenance.tiles import parse_tile_path

# tlog-tiles: a tile's bytes never change; a partial one is superseded by its full tile (and
# may then be deleted), so it is cached for a day, not forever; the checkpoint is mutable.
FULL_TILE_CACHE = "public, max-age=31536000, immutable"
PARTIAL_TILE_CACHE = "public, max-age=86400"
CHECKPOINT_CACHE = "no-cache"

_HEX64 = frozenset("0123456789abcdef")


async def get_checkpoint(request: web.Request) -> web.Response:
    """The latest checkpoint as a C2SP signed note (text/plain)."""
    checkpoint = coordinator_of(request).sequencer.checkpoint
    if checkpoint is None:
        raise NotFoundError("no checkpoint yet")
    return web.Response(text=checkpoint.note, content_type="text/plain", charset="utf-8")


async def get_log_key(request: web.Request) -> web.Response:
    """The log's verifier key in C2SP signed-note format (text/plain)."""
    text = format_verifier_key(coordinator_of(request).log_verifier) + "\n"
    return web.Response(text=text, content_type="text/plain", charset="utf-8")


async def _leaf_index_of(request: web.Request) -> int:
    leaf_hash = request.query.get("leaf_hash")
    if leaf_hash is None:
        return query_int(request, "leaf_index")
    if len(leaf_hash) != 64 or not set(leaf_hash) <= _HEX64:
        raise FormatError("leaf_hash must be 64 lowercase hex digits")
    batch = await coordinator_of(request).store.find_batch(leaf_hash)
    if batch is None or batch.log_index is None:
        raise NotFoundError("no sequenced leaf with that hash")
    return batch.log_index


async def get_inclusion_proof(request: web.Request) -> web.Response:
    """RFC 9162 §2.1.3 inclusion proof: ?leaf_index= (or ?leaf_hash=) & tree_size=."""
    size = query_int(request, "tree_size")
    index = await _leaf_index_of(request)
    proof = await coordinator_of(request).inclusion_proof(index, size)
    return web.json_response(
        {"leaf_index": index, "tree_size": size, "proof": [item.hex() for item in proof]}
    )


async def get_consistency_proof(request: web.Request) -> web.Response:
    """RFC 9162 §2.1.4 consistency proof: ?first=&second=."""
    first, second = query_int(request, "first"), query_int(request, "second")
    proof = await coordinator_of(request).consistency_proof(first, second)
    return web.json_response(
        {"first": first, "second": second, "proof": [item.hex() for item in proof]}
    )


async def get_receipt(request: web.Request) -> web.Response:
    """The receipt of a request (``provenance.receipts`` JSON), verifiable offline."""
    receipt = await coordinator_of(request).receipt(request.match_info["request_id"])
    return web.Response(body=format_receipt(receipt), content_type="application/json")


async def get_tlog_checkpoint(request: web.Request) -> web.Response:
    """tlog-tiles ``<prefix>/checkpoint``: ``/v1/checkpoint``'s note, never cached for long."""
    response = await get_checkpoint(request)
    response.headers["Cache-Control"] = CHECKPOINT_CACHE
    return response


async def get_tile(request: web.Request) -> web.Response:
    """tlog-tiles ``tile/<L>/<N>[.p/<W>]`` and ``tile/entries/<N>[.p/<W>]``, for tree sizes up
    to the latest checkpoint's (404 beyond it, and for any non-canonical path)."""
    try:
        tile = parse_tile_path("tile/" + request.match_info["tile"])
    except FormatError:
        raise NotFoundError("not a tlog-tiles path") from None
    coordinator = coordinator_of(request)
    checkpoint = coordinator.sequencer.checkpoint
    if checkpoint is None or tile.size_needed > checkpoint.size:
        raise NotFoundError("no such tile in the latest checkpoint's tree")
    async with open_tile_source(coordinator.config) as source:
        body = await source.content(tile)
    response = web.Response(body=body, content_type="application/octet-stream")
    response.headers["Cache-Control"] = PARTIAL_TILE_CACHE if tile.is_partial else FULL_TILE_CACHE
    if tile.level is None:
        response.enable_compression()  # "Entry bundles SHOULD be compressed at the HTTP layer"
    return response


TILE_ROUTES = (
    ("GET", "/checkpoint", get_tlog_checkpoint),
    ("GET", "/tile/{tile:.+}", get_tile),
)
