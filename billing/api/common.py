"""Helpers shared by the handlers: the Coordinator, admin auth, JSON bodies, query integers."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from billing.service import Coordinator
from billing.tokens import bearer_token
from provenance.errors import FormatError


def coordinator_of(request: web.Request) -> Coordinator:
    from billing.api.app import COORDINATOR

    return request.app[COORDINATOR]


async def require_admin(request: web.Request) -> None:
    """UnauthorizedError (401) unless ``Authorization: Bearer <admin token>``."""
    token = bearer_token(request.headers.get("Authorization"))
    await coordinator_of(request).check_admin(token)


async def json_body(request: web.Request, fields: dict[str, type]) -> dict[str, Any]:
    """A JSON object with (at least) these typed fields; FormatError otherwise."""
    try:
        body = json.loads(await request.read())
    except (ValueError, UnicodeDecodeError):
        raise FormatError("body is not JSON") from None
    if not isinstance(body, dict):
        raise FormatError("body must be a JSON object")
    for name, kind in fields.items():
        if not isinstance(body.get(name), kind):
            raise FormatError(f"field {name!r} missing or not a {kind.__name__}")
    return body


def query_int(request: web.Request, name: str) -> int:
    text = request.query.get(name, "")
    if not text.isdigit() or len(text) > 19:
        raise FormatError(f"query parameter {name!r} must be a non-negative integer")
    return int(text)
