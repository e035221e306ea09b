"""Billing's HTTP API (issue 6): periods, pricing, exports and reconciliation for the admin;
statements, earnings and receipts for one creator (read-only, creator token only).

``setup(app)`` adds the ``Billing`` service as a cleanup_ctx entry after the Coordinator's
(seed pricing and the runner interval come from ``BILLING_SETTINGS``, set by the CLI from the
``[pricing]`` and ``[billing]`` tables of the config file).

Creator isolation: every creator route reads only the token's own account; another creator's
statement or receipt answers 404 ``not-found`` (existence is not disclosed); an admin token on
a creator route answers 403 ``forbidden``.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from billing.api import ingest
from billing.api.common import coordinator_of, json_body, require_admin
from billing.errors import NotFoundError
from billing.ledger.backend import ledger_store_for
from billing.ledger.periods import format_period_id, parse_period_id
from billing.ledger.service import Billing
from billing.ledger.store import PeriodRow, PricingVersion
from billing.registry.errors import ForbiddenError
from billing.registry.service import Registry
from billing.store.base import BatchCounters
from billing.tokens import bearer_token
from provenance.errors import FormatError
from provenance.receipts import receipt_to_obj

SERVED_HEADER = "X-Cachet-Requests-Served"
EMITTED_HEADER = "X-Cachet-Records-Emitted"
DROPPED_HEADER = "X-Cachet-Records-Dropped"


@dataclass
class BillingSettings:
    seed_pricing: dict[str, Any] | None = None
    interval_s: float = 5.0
    background: bool = True
    extra: dict[str, Any] = field(default_factory=dict)


BILLING = web.AppKey("billing", Billing)
BILLING_SETTINGS = web.AppKey("billing_settings", BillingSettings)


def setup(app: web.Application) -> None:
    """Add the Billing service (call after the Coordinator's cleanup_ctx entry)."""
    from billing.api.app import COORDINATOR

    async def billing_ctx(app: web.Application) -> AsyncIterator[None]:
        settings = app.get(BILLING_SETTINGS) or BillingSettings()
        coordinator = app[COORDINATOR]
        ledger = ledger_store_for(coordinator.store)
        billing = Billing(
            coordinator, ledger, seed_pricing=settings.seed_pricing, interval_s=settings.interval_s
        )
        await billing.start(background=settings.background)
        app[BILLING] = billing
        yield
        await billing.stop()

    app.cleanup_ctx.append(billing_ctx)


def plug_admin_view(app: web.Application) -> None:
    """Give the admin UI billing's real ``BillingView`` (it defaults to an empty one); call
    before startup. The admin JSON API (``admin/api.py``: periods, close, statements,
    reconciliation) then serves billing's data."""
    from admin.context import BILLING_VIEW
    from billing.billing_view_impl import LedgerBillingView

    app[BILLING_VIEW] = LedgerBillingView(app)


def billing_of(request: web.Request) -> Billing:
    return request.app[BILLING]


def _period_obj(p: PeriodRow) -> dict[str, Any]:
    return {"id": p.period_id, "kind": p.kind, "start": p.start, "end": p.end_at,
            "closed_at": p.closed_at, "statements": p.statements,
            "payout_micros": p.payout_micros, "currency": p.currency,
            "pricing_version": p.pricing_version, "close_ms": p.duration_ms}  # fmt: skip


def _pricing_obj(v: PricingVersion) -> dict[str, Any]:
    return {"version": v.version, "at": v.at, "actor": v.actor,
            "pricing": json.loads(v.pricing_json)}  # fmt: skip


# -- admin ---------------------------------------------------------------------------------------
async def run_attribution(request: web.Request) -> web.Response:
    await require_admin(request)
    return web.json_response({"batches": await billing_of(request).run_attribution()})


async def export_csv(request: web.Request) -> web.Response:
    await require_admin(request)
    period_id = format_period_id(parse_period_id(request.match_info["period"]))
    text = await billing_of(request).export(period_id, "csv")
    return web.Response(text=text, content_type="text/csv", charset="utf-8")


async def export_json(request: web.Request) -> web.Response:
    await require_admin(request)
    period_id = format_period_id(parse_period_id(request.match_info["period"]))
    text = await billing_of(request).export(period_id, "json")
    return web.Response(text=text, content_type="application/json")


async def get_pricing(request: web.Request) -> web.Response:
    await require_admin(request)
    history = await billing_of(request).pricing_history()
    if not history:
        raise NotFoundError("no pricing yet")
    return web.json_response(_pricing_obj(history[0]))


async def put_pricing(request: web.Request) -> web.Response:
    await require_admin(request)
    body = await json_body(request, {})
    version = await billing_of(request).update_pricing(body, actor="admin-api")
    return web.json_response(_pricing_obj(version))


async def pricing_history(request: web.Request) -> web.Response:
    await require_admin(request)
    history = await billing_of(request).pricing_history()
    return web.json_response({"versions": [_pricing_obj(v) for v in history]})


# -- one creator -------------------------------------------------------------------------------
async def _creator(request: web.Request) -> str:
    coordinator = coordinator_of(request)
    registry = Registry(coordinator.store, coordinator.clock)
    actor = await registry.authenticate(bearer_token(request.headers.get("Authorization")))
    if actor.account is None:
        raise ForbiddenError("creator routes take a creator token")
    return actor.account


async def creator_statements(request: web.Request) -> web.Response:
    creator = await _creator(request)
    billing = billing_of(request)
    pairs = await billing.earnings(creator)
    items = [
        {"period": _period_obj(p), "sha256": s.sha256, "net_micros": s.net_micros,
         "payout_micros": s.payout_micros, "currency": s.currency}
        for p, s in pairs
    ]  # fmt: skip
    return web.json_response({"creator": creator, "statements": items})


async def creator_statement(request: web.Request) -> web.Response:
    creator = await _creator(request)
    billing = billing_of(request)
    period_id = format_period_id(parse_period_id(request.match_info["period"]))
    stored = await billing.ledger.find_statement(period_id, creator)
    if stored is None:
        raise NotFoundError("no statement of yours for that period")
    return web.json_response(await billing.statement_proof(stored))


async def creator_earnings(request: web.Request) -> web.Response:
    creator = await _creator(request)
    pairs = await billing_of(request).earnings(creator)
    series = [{"period": p.period_id, "gross_micros": s.gross_micros, "net_micros": s.net_micros,
               "payout_micros": s.payout_micros, "carry_out_micros": s.carry_out_micros,
               "currency": s.currency} for p, s in pairs]  # fmt: skip
    totals = {"net_micros": sum(s.net_micros for _, s in pairs),
              "payout_micros": sum(s.payout_micros for _, s in pairs)}  # fmt: skip
    return web.json_response({"creator": creator, "series": series, "totals": totals})


async def creator_receipt(request: web.Request) -> web.Response:
    creator = await _creator(request)
    receipt = await billing_of(request).creator_receipt(creator, request.match_info["request_id"])
    return web.json_response(receipt_to_obj(receipt))


# -- ingest with the edge's counters -----------------------------------------------------------
def counters_of(headers: Mapping[str, str]) -> BatchCounters | None:
    """The edge's counters for a batch (docs/billing.md §6), or None if it sent none. Served
    and emitted come both or neither; dropped (records a full spool refused) only with them,
    and at most served - emitted (the answers neither sampled out nor recorded); an edge that
    does not send it dropped none. Anything else is refused (400 ``malformed``)."""
    served = ingest.count_header(headers, SERVED_HEADER)
    emitted = ingest.count_header(headers, EMITTED_HEADER)
    dropped = ingest.count_header(headers, DROPPED_HEADER)
    if (served is None) != (emitted is None):
        raise FormatError(f"send both {SERVED_HEADER} and {EMITTED_HEADER}, or neither")
    if served is None or emitted is None:
        if dropped is not None:
            raise FormatError(f"{DROPPED_HEADER} needs {SERVED_HEADER} and {EMITTED_HEADER}")
        return None
    if dropped is None:
        return BatchCounters(served, emitted)
    if dropped > served - emitted:
        raise FormatError(
            f"{DROPPED_HEADER} ({dropped}) is more than {SERVED_HEADER} - {EMITTED_HEADER}"
            f" ({served} - {emitted})"
        )
    return BatchCounters(served, emitted, dropped)


async def post_batch(request: web.Request) -> web.Response:
    """``POST /v1/batches`` (``billing.api.ingest.post_batch``) that also keeps the optional
    ``X-Cachet-Requests-Served`` / ``-Records-Emitted`` / ``-Records-Dropped`` counters of an
    accepted batch for reconciliation, in the batch's own transaction (a duplicate stores
    nothing: the first acceptance stored them). Malformed counters refuse the batch (400)."""
    return await ingest.post_batch(request, counters_of(request.headers))


ROUTES: tuple[tuple[str, str, Any], ...] = (
    ("POST", "/v1/admin/billing/run", run_attribution),
    ("GET", "/v1/admin/periods/{period}/export.csv", export_csv),
    ("GET", "/v1/admin/periods/{period}/export.json", export_json),
    ("GET", "/v1/admin/pricing", get_pricing),
    ("PUT", "/v1/admin/pricing", put_pricing),
    ("GET", "/v1/admin/pricing/history", pricing_history),
    ("GET", "/v1/creator/statements", creator_statements),
    ("GET", "/v1/creator/statements/{period}", creator_statement),
    ("GET", "/v1/creator/earnings", creator_earnings),
    ("GET", "/v1/creator/receipts/{request_id}", creator_receipt),
)


def openapi_paths() -> dict[str, dict[str, Any]]:
    """Billing's entries of ``/openapi.json``."""
    from billing.api.openapi import _op, _path

    creator: list[dict[str, list[str]]] = [{"creator": []}]
    period = _path("period")
    return {
        "/v1/admin/billing/run": {"post": _op("attribute every sequenced batch now", admin=True)},
        "/v1/admin/periods/{period}/export.csv": {
            "get": _op("settlement CSV (RFC 4180), #total row", admin=True, parameters=period)},
        "/v1/admin/periods/{period}/export.json": {
            "get": _op("settlement JSON {rows, total}", admin=True, parameters=period)},
        "/v1/admin/pricing": {
            "get": _op("the current pricing rules", admin=True),
            "put": _op("replace the pricing rules (a [pricing] table as JSON; audited)",
                       admin=True)},
        "/v1/admin/pricing/history": {"get": _op("every pricing version", admin=True)},
        "/v1/creator/statements": {"get": _op("your statements", security=creator)},
        "/v1/creator/statements/{period}": {
            "get": _op("your statement as a statement proof: its inclusion proof in the global "
                       "log and the signed checkpoint (or anchor null and 'pending' until the "
                       "sequencer appends it); `cachet verify statement FILE --log-key` checks "
                       "it offline",
                       security=creator, parameters=period)},
        "/v1/creator/earnings": {"get": _op("your earnings per closed period", security=creator)},
        "/v1/creator/receipts/{request_id}": {
            "get": _op("receipt of a request billed to you", security=creator,
                       parameters=_path("request_id"))},
    }  # fmt: skip
