"""Admin pages for money, all through the ``BillingView`` Protocol: periods (close one),
statements with their line items, settlement exports (CSV, JSON), reconciliation per edge."""

from __future__ import annotations

from datetime import UTC
from typing import Any

from aiohttp import web

from admin.auth import ADMIN_AREA, checked_form, record_audit, require_session
from admin.billing_view import (
    PERIOD_KINDS,
    BillingUnavailableError,
    format_period_ref,
    parse_period_ref,
)
from admin.context import admin_context
from admin.pages import page_of, render
from billing.statements import Period, export_csv, export_json, hash_statement, period_containing


def period_from(request: web.Request, name: str = "period") -> Period:
    try:
        return parse_period_ref(request.match_info.get(name) or request.query.get(name, ""))
    except ValueError:
        raise web.HTTPNotFound(text="no such period\n") from None


async def _periods_page(request: web.Request, **extra: Any) -> web.Response:
    session = await require_session(request, ADMIN_AREA)
    periods = await admin_context(request).billing.list_periods()
    page = page_of(request, len(periods))
    now = admin_context(request).clock()
    suggestions = [format_period_ref(period_containing(now, kind)) for kind in PERIOD_KINDS]
    return render(
        request,
        "periods.html",
        session,
        periods=page.slice(periods),
        page=page,
        ref=format_period_ref,
        suggestions=suggestions,
        **extra,
    )


async def periods(request: web.Request) -> web.Response:
    return await _periods_page(request)


async def period_close(request: web.Request) -> web.Response:
    session = await require_session(request, ADMIN_AREA)
    form = await checked_form(request, session)
    try:
        period = parse_period_ref(form.get("period", "").strip())
        if period.end > admin_context(request).clock().astimezone(UTC):
            raise BillingUnavailableError("a period can only be closed after it has ended")
        status = await admin_context(request).billing.close_period(period)
    except (ValueError, BillingUnavailableError) as exc:
        return await _periods_page(request, error=f"Period not closed: {exc}")
    ref = format_period_ref(status.period)
    await record_audit(
        request, session.user.username, "close-period", ref, f"{status.statements} statements"
    )
    raise web.HTTPFound(f"/admin/periods/{ref}?msg=closed")


async def period_page(request: web.Request) -> web.Response:
    session = await require_session(request, ADMIN_AREA)
    period = period_from(request)
    statements = await admin_context(request).billing.statements(period)
    page = page_of(request, len(statements))
    return render(
        request,
        "period.html",
        session,
        period=period,
        ref=format_period_ref(period),
        statements=page.slice(statements),
        page=page,
    )


async def period_export(request: web.Request) -> web.Response:
    await require_session(request, ADMIN_AREA)
    period = period_from(request)
    statements = await admin_context(request).billing.statements(period)
    ref = format_period_ref(period)
    if request.match_info["fmt"] == "csv":
        body, kind = export_csv(statements), "text/csv"
    else:
        body, kind = export_json(statements), "application/json"
    response = web.Response(text=body, content_type=kind)
    response.headers["Content-Disposition"] = (
        f'attachment; filename="settlement-{ref}.{request.match_info["fmt"]}"'
    )
    return response


async def statement_page(request: web.Request) -> web.Response:
    session = await require_session(request, ADMIN_AREA)
    period = period_from(request)
    creator = request.match_info["creator"]
    statement = await admin_context(request).billing.statement(creator, period)
    if statement is None:
        raise web.HTTPNotFound(text="no statement for that creator and period\n")
    return render(
        request,
        "statement.html",
        session,
        statement=statement,
        sha256=hash_statement(statement),
        ref=format_period_ref(period),
        area="admin",
    )


async def reconciliation(request: web.Request) -> web.Response:
    session = await require_session(request, ADMIN_AREA)
    ctx = admin_context(request)
    periods = await ctx.billing.list_periods()
    if request.query.get("period"):
        period: Period | None = period_from(request)
    else:
        period = periods[0].period if periods else None
    rows = [] if period is None else await ctx.billing.reconciliation(period)
    return render(
        request,
        "reconciliation.html",
        session,
        rows=rows,
        chosen="" if period is None else format_period_ref(period),
        periods=[format_period_ref(p.period) for p in periods],
    )
