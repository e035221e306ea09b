"""The creator portal: a creator user sees its own manifests and content, earnings, statements,
receipts and downloads, and nothing of any other creator. Another creator's manifest, statement
or receipt answers 404, exactly like one that does not exist (no existence oracle)."""

from __future__ import annotations

from aiohttp import web

from admin.auth import PORTAL_AREA, require_session
from admin.billing_view import format_period_ref
from admin.charts import Series, bar_chart, empty_chart
from admin.context import admin_context
from admin.pages import page_of, render
from admin.receipts import ReceiptCheck, check_receipt
from admin.store import Session
from admin.views import receipt_file
from admin.views_billing import period_from
from admin.views_registry import view_manifest
from billing.statements import export_csv, hash_statement
from provenance.errors import CachetError


def _account(session: Session) -> str:
    if session.user.account is None:
        raise web.HTTPForbidden(text="403: no creator account\n")
    return session.user.account


async def home(request: web.Request) -> web.Response:
    session = await require_session(request, PORTAL_AREA)
    account = _account(session)
    ctx = admin_context(request)
    manifests = await ctx.queries.manifests_of(account)
    page = page_of(request, len(manifests))
    earnings = await ctx.billing.earnings_series(account)
    chart = (
        bar_chart(
            "Earnings per period (net, micro-units)",
            [p.period.start.strftime("%Y-%m-%d") for p in earnings],
            [
                Series("net", tuple(p.net_micros for p in earnings)),
                Series("paid", tuple(p.payout_micros for p in earnings), "s2"),
            ],
        )
        if earnings
        else empty_chart("Earnings", "no closed billing periods yet")
    )
    return render(
        request,
        "portal_home.html",
        session,
        account=account,
        page=page,
        manifests=page.slice(manifests),
        chart=chart,
        earnings=earnings[::-1],
        ref=format_period_ref,
    )


async def manifest(request: web.Request) -> web.Response:
    session = await require_session(request, PORTAL_AREA)
    try:
        view = await view_manifest(admin_context(request), request.match_info["manifest_id"])
    except CachetError:
        view = None
    if view is None or view.stored.creator != _account(session):
        raise web.HTTPNotFound(text="no such manifest\n")
    return render(request, "manifest.html", session, view=view, area="portal")


async def statements(request: web.Request) -> web.Response:
    session = await require_session(request, PORTAL_AREA)
    earnings = await admin_context(request).billing.earnings_series(_account(session))
    page = page_of(request, len(earnings))
    return render(
        request,
        "portal_statements.html",
        session,
        earnings=page.slice(earnings[::-1]),
        page=page,
        ref=format_period_ref,
    )


async def statement(request: web.Request) -> web.StreamResponse:
    session = await require_session(request, PORTAL_AREA)
    period = period_from(request)
    found = await admin_context(request).billing.statement(_account(session), period)
    if found is None or found.creator != _account(session):
        raise web.HTTPNotFound(text="no statement for that period\n")
    ref = format_period_ref(period)
    if request.match_info.get("fmt") == "csv":
        response = web.Response(text=export_csv([found]), content_type="text/csv")
        response.headers["Content-Disposition"] = f'attachment; filename="statement-{ref}.csv"'
        return response
    return render(
        request,
        "statement.html",
        session,
        statement=found,
        ref=ref,
        area="portal",
        sha256=hash_statement(found),
    )


async def _own_receipt(request: web.Request, session: Session, request_id: str) -> ReceiptCheck:
    """Only the creator's own records; any other answer is the same "not available"."""
    check = await check_receipt(admin_context(request).coordinator, request_id)
    if check.receipt is None or check.receipt.record.creator != _account(session):
        return ReceiptCheck(
            request_id,
            False,
            "not-available",
            "no receipt of yours with that request id (unknown, someone else's,"
            " or not in a checkpoint yet)",
            None,
            None,
        )
    return check


async def receipts(request: web.Request) -> web.Response:
    session = await require_session(request, PORTAL_AREA)
    request_id = request.query.get("request_id", "").strip()
    check = await _own_receipt(request, session, request_id) if request_id else None
    return render(request, "portal_receipts.html", session, check=check, request_id=request_id)


async def receipt_download(request: web.Request) -> web.Response:
    session = await require_session(request, PORTAL_AREA)
    check = await _own_receipt(request, session, request.match_info["rid"])
    if check.receipt is None:
        raise web.HTTPNotFound(text="no receipt\n")
    return receipt_file(check.request_id, check.receipt_json)
