"""``POST /v1/batches``: a sealed batch (canonical JSON, identity or gzip) from an edge.

The edge authenticates by its signature, checked against its enrolled keys. ``X-Cachet-Spool-Lag``
(optional, records waiting in the edge's spool) is recorded on the edge's status. Answers 200 with
``{"status": "accepted" | "duplicate", ...}``; a duplicate is an identical batch already stored
("already stored": the edge may delete it from its spool). Refusals: see ``billing.errors``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from aiohttp import web

from billing.api.common import coordinator_of
from billing.errors import PayloadTooLargeError
from billing.store.base import BatchCounters, Outcome
from provenance.errors import FormatError

SPOOL_LAG_HEADER = "X-Cachet-Spool-Lag"
_CHUNK_BYTES = 256 * 1024
_COUNT = re.compile("[0-9]{1,15}")


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


def count_header(headers: Mapping[str, str], name: str) -> int | None:
    """A header holding a count (at most 15 ASCII digits), None if absent; else 400."""
    text = headers.get(name)
    if text is None:
        return None
    if _COUNT.fullmatch(text.strip()) is None:  # ASCII: str.isdigit() takes "²"
        raise FormatError(f"{name} must be a non-negative integer")
    return int(text)


async def post_batch(request: web.Request, counters: BatchCounters | None = None) -> web.Response:
    """Ingest the body; ``counters`` (the edge's, already parsed: ``billing.api.billing``) are
    stored with the batch in its transaction, so only when it is accepted."""
    coordinator = coordinator_of(request)
    spool_lag = count_header(request.headers, SPOOL_LAG_HEADER)
    body = await read_limited(request, coordinator.config.max_batch_bytes)
    # aiohttp's server already decodes gzip/deflate bodies (RFC 9110 §8.4) while we read them,
    # so the limit above applies to the decoded bytes and the ingestor gets identity bytes.
    result = await coordinator.ingestor.ingest(body, None, spool_lag, counters)
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
