"""Admin and enrolment handlers: enrolment tokens, enrolment, edge keys, edge status."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from billing.api.common import coordinator_of, json_body, require_admin
from billing.store.base import EdgeStatus


async def create_enrolment_token(request: web.Request) -> web.Response:
    await require_admin(request)
    issued = await coordinator_of(request).issue_enrolment_token()
    return web.json_response({"token": issued.token, "expires_at": issued.expires_at}, status=201)


async def enrol(request: web.Request) -> web.Response:
    body = await json_body(request, {"token": str, "edge": str, "verifier_key": str})
    key = await coordinator_of(request).enrol(body["token"], body["edge"], body["verifier_key"])
    return web.json_response({"edge": key.edge, "key_id": key.key_id}, status=201)


async def add_key(request: web.Request) -> web.Response:
    await require_admin(request)
    body = await json_body(request, {"verifier_key": str})
    edge = request.match_info["edge"]
    key = await coordinator_of(request).add_edge_key(edge, body["verifier_key"])
    return web.json_response({"edge": key.edge, "key_id": key.key_id}, status=201)


async def revoke_key(request: web.Request) -> web.Response:
    await require_admin(request)
    info = request.match_info
    await coordinator_of(request).revoke_edge_key(info["edge"], info["key_id"])
    return web.Response(status=204)


def _edge_to_obj(edge: EdgeStatus, keys: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "edge": edge.edge,
        "enrolled_at": edge.enrolled_at,
        "last_seen_at": edge.last_seen_at,
        "chain_head": None
        if edge.head_seq is None
        else {"seq": edge.head_seq, "hash": edge.head_hash},
        "spool_lag": edge.spool_lag,
        "batches_accepted": edge.batches_accepted,
        "batches_rejected": edge.rejected,
        "incidents": edge.incidents,
        "keys": keys,
    }


async def list_edges(request: web.Request) -> web.Response:
    await require_admin(request)
    coordinator = coordinator_of(request)
    items = []
    for edge in await coordinator.list_edges():
        keys = [
            {"key_id": k.key_id, "verifier_key": k.verifier, "added_at": k.added_at,
             "revoked_at": k.revoked_at}
            for k in await coordinator.store.edge_keys(edge.edge)
        ]  # fmt: skip
        items.append(_edge_to_obj(edge, keys))
    return web.json_response({"edges": items})


async def list_incidents(request: web.Request) -> web.Response:
    await require_admin(request)
    incidents = await coordinator_of(request).store.list_incidents(request.query.get("edge"))
    return web.json_response(
        {
            "incidents": [
                {
                    "id": i.incident_id,
                    "edge": i.edge,
                    "kind": i.kind,
                    "seq": i.seq,
                    "detail": i.detail,
                    "header": i.header_json,
                    "at": i.at,
                }
                for i in incidents
            ]
        }
    )
