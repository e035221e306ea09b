"""Registry handlers: creators (admin), publish and revoke (creator token or admin), public
lookups and the public change feed (manifests are public; the feed holds no secrets)."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from billing.api.common import coordinator_of, json_body, query_int, require_admin
from billing.errors import PayloadTooLargeError
from billing.registry.service import ActiveManifest, Actor, CreatorInfo, Registry
from billing.store.base import StoredManifest
from billing.tokens import bearer_token

MAX_MANIFEST_BYTES = 32 * 1024**2
DEFAULT_FEED_LIMIT = 100


def registry_of(request: web.Request) -> Registry:
    coordinator = coordinator_of(request)
    return Registry(coordinator.store, coordinator.clock)


async def _actor(request: web.Request) -> Actor:
    token = bearer_token(request.headers.get("Authorization"))
    return await registry_of(request).authenticate(token)


def _creator_obj(info: CreatorInfo) -> dict[str, Any]:
    keys = [
        {"key_id": k.key_id, "verifier_key": k.verifier, "added_at": k.added_at,
         "revoked_at": k.revoked_at}
        for k in info.keys
    ]  # fmt: skip
    return {"account": info.account, "created_at": info.created_at, "keys": keys}


def _manifest_obj(m: StoredManifest) -> dict[str, Any]:
    return {
        "manifest_id": m.manifest_id,
        "creator": m.creator,
        "lineage": m.lineage,
        "version": m.version,
        "supersedes": m.supersedes,
        "published_at": m.published_at,
        "superseded_at": m.superseded_at,
        "revoked_at": m.revoked_at,
        "effective_at": m.effective_at,
        "revoke_reason": m.revoke_reason,
        "manifest": json.loads(m.signed_json),
    }


def _active_obj(a: ActiveManifest) -> dict[str, Any]:
    item = a.item
    return {
        "manifest_id": a.manifest_id,
        "creator": a.creator,
        "version": a.version,
        "item": {"content_id": item.content_id, "path": item.path,
                 "size_bytes": item.size_bytes, "media_type": item.media_type},
    }  # fmt: skip


async def add_creator(request: web.Request) -> web.Response:
    await require_admin(request)
    body = await json_body(request, {"account": str, "verifier_keys": list})
    keys = await registry_of(request).add_creator(body["account"], body["verifier_keys"])
    return web.json_response(
        {"account": body["account"], "key_ids": [k.key_id for k in keys]}, status=201
    )


async def list_creators(request: web.Request) -> web.Response:
    await require_admin(request)
    creators = await registry_of(request).list_creators()
    return web.json_response({"creators": [_creator_obj(c) for c in creators]})


async def add_creator_key(request: web.Request) -> web.Response:
    await require_admin(request)
    body = await json_body(request, {"verifier_key": str})
    account = request.match_info["account"]
    key = await registry_of(request).add_creator_key(account, body["verifier_key"])
    return web.json_response({"account": account, "key_id": key.key_id}, status=201)


async def revoke_creator_key(request: web.Request) -> web.Response:
    await require_admin(request)
    info = request.match_info
    await registry_of(request).revoke_creator_key(info["account"], info["key_id"])
    return web.Response(status=204)


async def issue_creator_token(request: web.Request) -> web.Response:
    await require_admin(request)
    account = request.match_info["account"]
    token = await registry_of(request).issue_creator_token(account)
    return web.json_response({"account": account, "token": token}, status=201)


async def publish(request: web.Request) -> web.Response:
    actor = await _actor(request)
    body = await request.content.read(MAX_MANIFEST_BYTES + 1)
    if len(body) > MAX_MANIFEST_BYTES:
        raise PayloadTooLargeError("manifest larger than the limit")
    stored, created = await registry_of(request).publish(body, actor)
    result = {"status": "stored" if created else "duplicate", **_manifest_obj(stored)}
    if not created:
        result["detail"] = "already stored"
    return web.json_response(result, status=201 if created else 200)


async def revoke(request: web.Request) -> web.Response:
    actor = await _actor(request)
    body = await json_body(request, {"reason": str, "grace_s": int})
    manifest_id = request.match_info["manifest_id"]
    stored, changed = await registry_of(request).revoke(
        manifest_id, body["reason"], body["grace_s"], actor
    )
    status = "revoked" if changed else "already revoked"
    return web.json_response({"status": status, **_manifest_obj(stored)})


async def get_manifest(request: web.Request) -> web.Response:
    stored = await registry_of(request).manifest(request.match_info["manifest_id"])
    return web.json_response(_manifest_obj(stored))


async def content_by_id(request: web.Request) -> web.Response:
    content_id = request.match_info["content_id"]
    active = await registry_of(request).active_now(content_id=content_id)
    return web.json_response(
        {"content_id": content_id, "manifests": [_active_obj(a) for a in active]}
    )


async def content_by_path(request: web.Request) -> web.Response:
    path = request.query.get("path", "")
    active = await registry_of(request).active_now(path=path)
    return web.json_response({"path": path, "manifests": [_active_obj(a) for a in active]})


async def changes(request: web.Request) -> web.Response:
    cursor = query_int(request, "cursor") if "cursor" in request.query else 0
    limit = query_int(request, "limit") if "limit" in request.query else DEFAULT_FEED_LIMIT
    events = await registry_of(request).changes(cursor, limit)
    items = [
        {"seq": e.seq, "kind": e.kind, "at": e.at, **json.loads(e.payload_json)} for e in events
    ]
    next_cursor = events[-1].seq if events else cursor
    return web.json_response({"events": items, "cursor": next_cursor, "more": len(events) == limit})
