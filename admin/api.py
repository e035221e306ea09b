"""The JSON admin API behind the UI's actions that ``billing.api`` does not already offer
(bearer admin token, like every ``/v1/admin/`` route; listed in ``/openapi.json`` through
``API_ROUTES`` and ``openapi_paths``). Actions made here are written to the audit trail with the
actor ``api-token``."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from admin.auth import record_audit
from admin.billing_view import BillingUnavailableError, format_period_ref, parse_period_ref
from admin.context import admin_context
from admin.pages import Handler
from admin.receipts import check_receipt
from admin.views_registry import set_creator_password
from billing.api.common import json_body, require_admin
from billing.errors import NotFoundError
from billing.statements import Period, statement_to_obj
from provenance.errors import FormatError

API_ACTOR = "api-token"
MAX_LIMIT = 500


def _limit_offset(request: web.Request) -> tuple[int, int]:
    limit_text, offset_text = request.query.get("limit", "100"), request.query.get("offset", "0")
    if not (limit_text.isdigit() and offset_text.isdigit()) or len(offset_text) > 12:
        raise FormatError("limit and offset must be non-negative integers")
    return min(max(int(limit_text), 1), MAX_LIMIT), int(offset_text)


def _period(request: web.Request) -> Period:
    try:
        return parse_period_ref(request.query.get("period", ""))
    except ValueError as exc:
        raise FormatError(f"period: {exc}") from None


async def list_audit(request: web.Request) -> web.Response:
    await require_admin(request)
    limit, offset = _limit_offset(request)
    store = admin_context(request).store
    entries = await store.list_audit(offset, limit)
    items = [
        {
            "id": e.audit_id,
            "at": e.at,
            "actor": e.actor,
            "action": e.action,
            "target": e.target,
            "detail": e.detail,
        }
        for e in entries
    ]
    return web.json_response({"total": await store.count_audit(), "entries": items})


async def put_creator_password(request: web.Request) -> web.Response:
    await require_admin(request)
    body = await json_body(request, {"password": str})
    account = request.match_info["account"]
    try:
        created = await set_creator_password(admin_context(request), account, body["password"])
    except LookupError:
        raise NotFoundError("no such creator") from None
    except ValueError as exc:
        raise FormatError(str(exc)) from None
    await record_audit(request, API_ACTOR, "set-creator-password", account)
    return web.json_response({"account": account, "created": created})


async def list_checkpoints(request: web.Request) -> web.Response:
    await require_admin(request)
    limit, offset = _limit_offset(request)
    queries = admin_context(request).queries
    items = [
        {"tree_size": c.size, "root_hash": c.root_hash, "note": c.note, "created_at": c.created_at}
        for c in await queries.checkpoints(offset, limit)
    ]
    return web.json_response({"total": await queries.count_checkpoints(), "checkpoints": items})


async def verify_receipt_of(request: web.Request) -> web.Response:
    await require_admin(request)
    check = await check_receipt(
        admin_context(request).coordinator, request.query.get("request_id", "")
    )
    return web.json_response(
        {
            "request_id": check.request_id,
            "verified": check.verified,
            "reason": check.reason,
            "detail": check.detail,
            "checkpoint_size": check.checkpoint_size,
            "record": check.record or None,
        }
    )


async def creator_manifests(request: web.Request) -> web.Response:
    await require_admin(request)
    manifests = await admin_context(request).queries.manifests_of(request.match_info["account"])
    items = [
        {
            "manifest_id": m.manifest_id,
            "lineage": m.lineage,
            "version": m.version,
            "published_at": m.published_at,
            "superseded_at": m.superseded_at,
            "revoked_at": m.revoked_at,
            "effective_at": m.effective_at,
        }
        for m in manifests
    ]
    return web.json_response({"manifests": items})


def _period_obj(status: Any) -> dict[str, Any]:
    return {
        "period": format_period_ref(status.period),
        "kind": status.period.kind,
        "closed_at": status.closed_at,
        "statements": status.statements,
        "payout_micros": status.payout_micros,
        "currency": status.currency,
    }


async def list_periods(request: web.Request) -> web.Response:
    await require_admin(request)
    periods = await admin_context(request).billing.list_periods()
    return web.json_response({"periods": [_period_obj(p) for p in periods]})


async def close_period(request: web.Request) -> web.Response:
    await require_admin(request)
    period = _period(request)
    try:
        status = await admin_context(request).billing.close_period(period)
    except BillingUnavailableError as exc:
        return web.json_response({"error": "billing-unavailable", "detail": str(exc)}, status=409)
    await record_audit(request, API_ACTOR, "close-period", format_period_ref(period))
    return web.json_response(_period_obj(status))


async def period_statements(request: web.Request) -> web.Response:
    await require_admin(request)
    statements = await admin_context(request).billing.statements(_period(request))
    return web.json_response({"statements": [statement_to_obj(s) for s in statements]})


async def period_reconciliation(request: web.Request) -> web.Response:
    await require_admin(request)
    rows = await admin_context(request).billing.reconciliation(_period(request))
    items = [
        {
            "edge": r.edge,
            "expected": r.expected,
            "billed": r.billed,
            "differences": dict(r.differences),
            "duplicates": r.duplicates,
            "unexplained_transport": r.unexplained_transport,
            "unexplained_billing": r.unexplained_billing,
        }
        for r in rows
    ]
    return web.json_response({"edges": items})


API_ROUTES: tuple[tuple[str, str, Handler], ...] = (
    ("GET", "/v1/admin/audit", list_audit),
    ("PUT", "/v1/admin/creators/{account}/password", put_creator_password),
    ("GET", "/v1/admin/creators/{account}/manifests", creator_manifests),
    ("GET", "/v1/admin/checkpoints", list_checkpoints),
    ("GET", "/v1/admin/receipt-verification", verify_receipt_of),
    ("GET", "/v1/admin/periods", list_periods),
    ("POST", "/v1/admin/periods/close", close_period),
    ("GET", "/v1/admin/statements", period_statements),
    ("GET", "/v1/admin/reconciliation", period_reconciliation),
)


def openapi_paths() -> dict[str, dict[str, Any]]:
    """The ``/openapi.json`` entries of ``API_ROUTES`` (admin bearer token on each)."""
    from billing.api.openapi import _op, _path, _query

    lim, per = _query("limit", "offset"), _query("period")
    period_note = " (?period=<kind>-<start>, e.g. day-2026-11-27T00:00:00Z)"
    account = _path("account")
    return {
        "/v1/admin/audit": {
            "get": _op("audit trail of admin actions, newest first", admin=True, parameters=lim)
        },
        "/v1/admin/creators/{account}/password": {
            "put": _op(
                "set a creator's portal password: {password}", admin=True, parameters=account
            )
        },
        "/v1/admin/creators/{account}/manifests": {
            "get": _op("a creator's manifest versions", admin=True, parameters=account)
        },
        "/v1/admin/checkpoints": {
            "get": _op("checkpoints, newest first", admin=True, parameters=lim)
        },
        "/v1/admin/receipt-verification": {
            "get": _op(
                "a request's receipt verified server-side: verified, reason, record",
                admin=True,
                parameters=_query("request_id"),
            )
        },
        "/v1/admin/periods": {"get": _op("billing periods, newest first", admin=True)},
        "/v1/admin/periods/close": {
            "post": _op("close a period" + period_note, admin=True, parameters=per)
        },
        "/v1/admin/statements": {
            "get": _op(
                "a period's statements with line items" + period_note, admin=True, parameters=per
            )
        },
        "/v1/admin/reconciliation": {
            "get": _op(
                "expected vs billed per edge, differences by reason" + period_note,
                admin=True,
                parameters=per,
            )
        },
    }
