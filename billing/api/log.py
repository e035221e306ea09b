"""The log's public, read-only endpoints: checkpoint, key, proofs, receipts."""

from __future__ import annotations

from aiohttp import web

from billing.api.common import coordinator_of, query_int
from billing.errors import NotFoundError
from provenance.errors import FormatError
from provenance.keys import format_verifier_key
from provenance.receipts import format_receipt

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
