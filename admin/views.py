"""Admin pages: overview dashboard, fleet (edges and their keys), log and receipts, audit."""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass
from datetime import timedelta
from typing import Any

from aiohttp import web

from admin.auth import ADMIN_AREA, checked_form, record_audit, require_session
from admin.charts import Series, bar_chart, empty_chart, line_chart
from admin.context import AdminContext, admin_context
from admin.pages import page_of, render
from admin.queries import HourBatches, HourTraffic, TopCreator
from admin.receipts import check_receipt
from billing.errors import reason_of
from provenance.errors import CachetError
from provenance.records import format_timestamp

DASHBOARD_HOURS = 48


@dataclass(frozen=True, slots=True)
class Dashboard:
    """The last ``DASHBOARD_HOURS`` of the coordinator's traffic, as the overview shows it."""

    since: str
    traffic: list[HourTraffic]
    batches: list[HourBatches]
    rejected: Counter[str]
    top: list[TopCreator]
    totals: dict[str, int]


async def dashboard(ctx: AdminContext) -> Dashboard:
    since = format_timestamp(ctx.clock() - timedelta(hours=DASHBOARD_HOURS))
    served = await ctx.queries.traffic_since(since)  # one read for the hours and the creators
    traffic = served.by_hour()
    batches = await ctx.queries.batches_by_hour(since)
    edges = await ctx.coordinator.list_edges()
    rejected: Counter[str] = Counter()
    for edge in edges:
        rejected.update(edge.rejected)
    totals = {
        "requests": sum(t.requests for t in traffic),
        "hits": sum(t.hits for t in traffic),
        "batches": sum(b.batches for b in batches),
        "records": sum(b.records for b in batches),
        "edges": len(edges),
        "rejected": sum(rejected.values()),
        "log_size": ctx.coordinator.sequencer.state.size,
    }
    top = served.top_creators(10)
    return Dashboard(since, traffic, batches, rejected, top, totals)


async def dashboard_json(request: web.Request) -> web.Response:
    """``/admin/dashboard.json``: the overview's numbers for scripts with an admin session."""
    await require_session(request, ADMIN_AREA)
    board = await dashboard(admin_context(request))
    return web.json_response(
        {
            "hours": DASHBOARD_HOURS,
            "since": board.since,
            "totals": board.totals,
            "traffic": [asdict(t) for t in board.traffic],
            "batches": [asdict(b) for b in board.batches],
            "rejected": dict(sorted(board.rejected.items())),
            "top_creators": [asdict(c) for c in board.top],
        }
    )


async def overview(request: web.Request) -> web.Response:
    session = await require_session(request, ADMIN_AREA)
    ctx = admin_context(request)
    board = await dashboard(ctx)
    traffic, batches, rejected = board.traffic, board.batches, board.rejected
    hours = [t.hour[5:].replace("T", " ") + "h" for t in traffic]
    periods = await ctx.billing.list_periods()
    charts = {
        "requests": bar_chart(
            "Requests and cache hits per hour",
            hours,
            [
                Series("requests", tuple(t.requests for t in traffic), "s1"),
                Series("hits", tuple(t.hits for t in traffic), "s2"),
            ],
        ),
        "bytes": line_chart(
            "Bytes served vs origin bytes per hour",
            hours,
            [
                Series("bytes served", tuple(t.bytes_served for t in traffic), "s1"),
                Series("origin bytes", tuple(t.origin_bytes for t in traffic), "s3"),
            ],
        ),
        "batches": bar_chart(
            "Batches accepted per hour",
            [b.hour[5:].replace("T", " ") + "h" for b in batches],
            [
                Series("batches", tuple(b.batches for b in batches), "s1"),
                Series("records", tuple(b.records for b in batches), "s2"),
            ],
        ),
        "rejected": bar_chart(
            "Rejected batches by reason",
            sorted(rejected),
            [Series("batches", tuple(rejected[r] for r in sorted(rejected)), "s4")],
        ),
        "payouts": bar_chart(
            "Payouts by period",
            [p.period.start.strftime("%m-%d %H") for p in periods[::-1]],
            [Series("payout (micro-units)", tuple(p.payout_micros for p in periods[::-1]))],
        )
        if periods
        else empty_chart("Payouts by period", "no closed billing periods yet"),
    }
    return render(
        request,
        "overview.html",
        session,
        charts=charts,
        totals=board.totals,
        top=board.top,
        traffic=traffic,
        rejected=sorted(rejected.items()),
        hours=DASHBOARD_HOURS,
    )


async def _fleet_page(request: web.Request, **extra: Any) -> web.Response:
    session = await require_session(request, ADMIN_AREA)
    ctx = admin_context(request)
    edges = await ctx.coordinator.list_edges()
    page = page_of(request, len(edges))
    rows = [(e, await ctx.coordinator.store.edge_keys(e.edge)) for e in page.slice(edges)]
    return render(request, "fleet.html", session, rows=rows, page=page, **extra)


async def fleet(request: web.Request) -> web.Response:
    return await _fleet_page(request)


async def fleet_enrolment_token(request: web.Request) -> web.Response:
    session = await require_session(request, ADMIN_AREA)
    await checked_form(request, session)
    issued = await admin_context(request).coordinator.issue_enrolment_token()
    await record_audit(
        request,
        session.user.username,
        "issue-enrolment-token",
        "fleet",
        f"expires {issued.expires_at}",
    )
    return await _fleet_page(request, issued=issued)


async def fleet_add_key(request: web.Request) -> web.Response:
    session = await require_session(request, ADMIN_AREA)
    form = await checked_form(request, session)
    edge = request.match_info["edge"]
    try:
        key = await admin_context(request).coordinator.add_edge_key(edge, form.get("verifier_key"))
    except CachetError as exc:
        return await _fleet_page(request, error=f"Key not added: {reason_of(exc)}: {exc}")
    await record_audit(request, session.user.username, "add-edge-key", f"{edge}/{key.key_id}")
    raise web.HTTPFound("/admin/fleet?msg=added-key")


async def fleet_revoke_key(request: web.Request) -> web.Response:
    session = await require_session(request, ADMIN_AREA)
    await checked_form(request, session)
    edge, key_id = request.match_info["edge"], request.match_info["key_id"]
    try:
        await admin_context(request).coordinator.revoke_edge_key(edge, key_id)
    except CachetError as exc:
        return await _fleet_page(request, error=f"Key not revoked: {reason_of(exc)}: {exc}")
    await record_audit(request, session.user.username, "revoke-edge-key", f"{edge}/{key_id}")
    raise web.HTTPFound("/admin/fleet?msg=revoked-key")


async def log_page(request: web.Request) -> web.Response:
    session = await require_session(request, ADMIN_AREA)
    ctx = admin_context(request)
    page = page_of(request, await ctx.queries.count_checkpoints())
    checkpoints = await ctx.queries.checkpoints(page.offset, page.size)
    request_id = request.query.get("request_id", "").strip()
    check = await check_receipt(ctx.coordinator, request_id) if request_id else None
    sizes = checkpoints[::-1]
    chart = line_chart(
        "Log size at each checkpoint",
        [c.created_at[5:16] for c in sizes],
        [Series("tree size", tuple(c.size for c in sizes))],
    )
    return render(
        request,
        "log.html",
        session,
        checkpoints=checkpoints,
        page=page,
        check=check,
        chart=chart,
        request_id=request_id,
    )


async def receipt_download(request: web.Request) -> web.Response:
    await require_session(request, ADMIN_AREA)
    check = await check_receipt(admin_context(request).coordinator, request.match_info["rid"])
    if check.receipt is None:
        raise web.HTTPNotFound(text=f"no receipt: {check.reason}\n")
    return receipt_file(check.request_id, check.receipt_json)


def receipt_file(request_id: str, body: bytes) -> web.Response:
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in request_id)
    response = web.Response(body=body, content_type="application/json")
    response.headers["Content-Disposition"] = f'attachment; filename="receipt-{safe}.json"'
    return response


async def audit_page(request: web.Request) -> web.Response:
    session = await require_session(request, ADMIN_AREA)
    store = admin_context(request).store
    page = page_of(request, await store.count_audit())
    entries = await store.list_audit(page.offset, page.size)
    return render(request, "audit.html", session, entries=entries, page=page)
