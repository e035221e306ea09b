"""``/openapi.json``: a hand-written OpenAPI 3.1 description of every route (a test checks that
each route of the app appears here and nothing else)."""

from __future__ import annotations

from typing import Any

from admin.api import openapi_paths as admin_openapi_paths
from billing.api.billing import openapi_paths as billing_openapi_paths

_ERR = {"description": 'refused: {"error": "<reason>"}'}
_ADMIN: list[dict[str, list[str]]] = [{"admin": []}]


def _op(summary: str, ok: str = "200", *, admin: bool = False, **extra: Any) -> dict[str, Any]:
    op: dict[str, Any] = {"summary": summary, "responses": {ok: {"description": "ok"}}}
    if admin:
        op["security"] = _ADMIN
        op["responses"]["401"] = _ERR
    op.update(extra)
    return op


def _query(*names: str) -> list[dict[str, Any]]:
    return [
        {"name": n, "in": "query", "required": False, "schema": {"type": "string"}} for n in names
    ]


def _path(*names: str) -> list[dict[str, Any]]:
    return [
        {"name": n, "in": "path", "required": True, "schema": {"type": "string"}} for n in names
    ]


def _registry_paths() -> dict[str, dict[str, Any]]:
    """The manifest registry (docs/design/registry.md)."""
    publish_errors = {code: _ERR for code in ("400", "401", "403", "409", "413", "422")}
    creator_or_admin: list[dict[str, list[str]]] = [{"admin": []}, {"creator": []}]
    return {
        "/v1/admin/creators": {
            "post": _op("add a creator: {account, verifier_keys: [C2SP]}", "201", admin=True),
            "get": _op("creators and their keys", admin=True),
        },
        "/v1/admin/creators/{account}/keys": {
            "post": _op("add a creator key", "201", admin=True, parameters=_path("account"))
        },
        "/v1/admin/creators/{account}/keys/{key_id}": {
            "delete": _op(
                "revoke a creator key", "204", admin=True, parameters=_path("account", "key_id")
            )
        },
        "/v1/admin/creators/{account}/tokens": {
            "post": _op("issue a creator API token", "201", admin=True, parameters=_path("account"))
        },
        "/v1/manifests": {
            "post": _op(
                "publish a signed manifest (201 stored, 200 already stored)",
                "201",
                security=creator_or_admin,
                responses={
                    "201": {"description": "stored"},
                    "200": {"description": "duplicate"},
                    **publish_errors,
                },
            )
        },
        "/v1/manifests/{manifest_id}": {
            "get": _op("a published manifest version", parameters=_path("manifest_id"))
        },
        "/v1/manifests/{manifest_id}/revoke": {
            "post": _op(
                "revoke a version: {reason, grace_s}; inactive from revoked_at + grace_s",
                security=creator_or_admin,
                parameters=_path("manifest_id"),
            )
        },
        "/v1/content": {
            "get": _op("active manifest versions naming a path", parameters=_query("path"))
        },
        "/v1/content/{content_id}": {
            "get": _op(
                "active manifest versions naming a content id", parameters=_path("content_id")
            )
        },
        "/v1/registry/changes": {
            "get": _op(
                "change feed: events after cursor, in order (public)",
                parameters=_query("cursor", "limit"),
            )
        },
    }


def tile_openapi_paths() -> dict[str, dict[str, Any]]:
    """The log as C2SP tlog-tiles (docs/design/coordinator.md, "Tiles"). The route matches the
    whole rest of the path (``/tile/{tile:.+}`` in aiohttp): ``{tile}`` spans several segments."""
    tile = {
        "name": "tile",
        "in": "path",
        "required": True,
        "description": "<L>/<N>[.p/<W>] or entries/<N>[.p/<W>]; <N> in 3-digit elements, "
        "x-prefixed but the last (1234067: x001/x234/067)",
        "schema": {"type": "string"},
    }
    octets = {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}
    return {
        "/checkpoint": {
            "get": _op(
                "tlog-tiles checkpoint: /v1/checkpoint's signed note, Cache-Control no-cache",
                responses={"200": {"description": "the note (text/plain)"}, "404": _ERR},
            )
        },
        "/tile/{tile}": {
            "get": _op(
                "a tlog-tiles Merkle tile (256 hashes of 32 bytes; partial .p/<W>: W hashes) "
                "or entry bundle (uint16-length-prefixed leaf data: a batch's canonical signed "
                "header or a statement's canonical {creator, kind, period, sha256}; gzip on "
                "request); full ones immutable; 404 beyond the latest checkpoint",
                parameters=[tile],
                responses={"200": {"description": "the bytes", "content": octets}, "404": _ERR},
            )
        },
    }


def openapi_document() -> dict[str, Any]:
    batch_errors = {code: _ERR for code in ("400", "403", "409", "413", "422", "503")}
    paths: dict[str, dict[str, Any]] = {
        "/healthz": {"get": _op("liveness")},
        "/metrics": {"get": _op("Prometheus metrics")},
        "/openapi.json": {"get": _op("this document")},
        "/v1/admin/enrolment-tokens": {
            "post": _op("issue a one-time, expiring enrolment token", "201", admin=True)
        },
        "/v1/edges/enrol": {
            "post": _op(
                "enrol an edge: {token, edge, verifier_key} (C2SP key named after the edge)",
                "201",
                responses={"201": {"description": "enrolled"}, "403": _ERR, "409": _ERR},
            )
        },
        "/v1/admin/edges": {"get": _op("edges: keys, last seen, chain head, lag", admin=True)},
        "/v1/admin/edges/{edge}/keys": {
            "post": _op(
                "add a key (rotation with overlap)", "201", admin=True, parameters=_path("edge")
            )
        },
        "/v1/admin/edges/{edge}/keys/{key_id}": {
            "delete": _op("revoke a key", "204", admin=True, parameters=_path("edge", "key_id"))
        },
        "/v1/admin/incidents": {
            "get": _op("chain gaps and forks", admin=True, parameters=_query("edge"))
        },
        "/v1/batches": {
            "post": _op(
                "ingest a sealed batch (identity or gzip); optional headers"
                " X-Cachet-Spool-Lag and the reconciliation counters X-Cachet-Requests-Served,"
                " X-Cachet-Records-Emitted, X-Cachet-Records-Dropped",
                responses={"200": {"description": "accepted or duplicate"}, **batch_errors},
            )
        },
        "/v1/checkpoint": {"get": _op("latest checkpoint, C2SP signed note (text/plain)")},
        "/v1/log/key": {"get": _op("the log's C2SP verifier key (text/plain)")},
        "/v1/log/proof/inclusion": {
            "get": _op(
                "RFC 9162 inclusion proof of a leaf (a batch or a statement) by leaf_index, or "
                "of a batch by leaf_hash (its batch id)",
                parameters=_query("leaf_index", "leaf_hash", "tree_size"),
            )
        },
        "/v1/log/proof/consistency": {
            "get": _op("RFC 9162 consistency proof", parameters=_query("first", "second"))
        },
        "/v1/receipts/{request_id}": {
            "get": _op("offline-verifiable receipt of a request", parameters=_path("request_id"))
        },
    }
    paths.update(tile_openapi_paths())
    paths.update(_registry_paths())
    paths.update(admin_openapi_paths())
    paths.update(billing_openapi_paths())
    return {
        "openapi": "3.1.0",
        "info": {"title": "Cachet coordinator", "version": "1"},
        "components": {
            "securitySchemes": {
                "admin": {"type": "http", "scheme": "bearer"},
                "creator": {"type": "http", "scheme": "bearer"},
            }
        },
        "paths": paths,
    }
