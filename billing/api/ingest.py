"""``POST /v1/batches``: a sealed batch (canonical JSON, identity or gzip) from an edge.

The edge authenticates by its signature, checked against its enrolled keys. ``X-Cachet-Spool-Lag``
(optional, records waiting in the edge's spool) is recorded on the edge's status. Answers 200 with
``{"status": "accepted" | "duplicate", ...}``; a duplicate is an identical batch already stored
("already stored": the edge may delete it from its spool). Refusals: see ``billing.errors``.
"""

from __future__ import annotations

from aiohttp import web

from billing.api.common import coordinator_of
from billing.errors import PayloadTooLargeError
from billing.store.base import Outcome
from provenance.errors import FormatError

SPOOL_LAG_HEADER = "X-Cachet-Spool-Lag"
_CHUNK_BYTES = 256 * 1024


async def read_limited(request: web.Request, limit_bytes: int) -> bytes:
    """The request body, refusing (413) more than ``limit_bytes`` before reading it all."""
    if request.content_length is not None and request.content_length > limit_bytes:
        raise PayloadTooLargeError(f"Content-Length over {limit_bytes}")
    chunks: list[bytes] = []
    size = 0
    while chunk := await request.content.read(_CHUNK_BYTES):
        size += len(chunk)
        if size > limit_bytes:
            raise PayloadTooLargeError(f"body over {limit_bytes}")
        chunks.append(chunk)
    return b"".join(chunks)


def _spool_lag(request: web.Request) -> int | None:
    text = request.headers.get(SPOOL_LAG_HEADER)
    if text is None:
        return None
    if not text.strip().isdigit() or len(text.strip()) > 15:
        raise FormatError(f"{SPOOL_LAG_HEADER} must be a non-negative integer")
    return int(text)


async def post_batch(request: web.Request) -> web.Response:
    coordinator = coordinator_of(request)
    spool_lag = _spool_lag(request)
    body = await read_limited(request, coordinator.config.max_batch_bytes)
    # aiohttp's server already decodes gzip/deflate bodies (RFC 9110 §8.4) while we read them,
    # so the limit above applies to the decoded bytes and the ingestor gets identity bytes.
    result = await coordinator.ingestor.ingest(body, None, spool_lag)
    answer: dict[str, object] = {
        "status": result.outcome.value,
        "batch_id": result.batch_id,
        "edge": result.edge,
        "seq": result.seq,
    }
    if result.outcome is Outcome.DUPLICATE:
        answer["detail"] = "already stored"
    else:
        answer["records_stored"] = result.records_stored
        answer["records_duplicate"] = result.records_duplicate
    return web.json_response(answer)
