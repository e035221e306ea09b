"""Admin pages for creators and manifests: list and search, view (verified signature, items,
terms, versions), revoke a version, set a creator's portal password."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from admin.auth import ADMIN_AREA, checked_form, record_audit, require_session
from admin.context import AdminContext, admin_context
from admin.pages import page_of, render
from admin.passwords import check_password_policy, hash_password
from admin.store import CREATOR, UiUser, UserExistsError
from billing.errors import reason_of
from billing.registry.service import Actor
from billing.store.base import StoredManifest
from provenance.errors import CachetError
from provenance.keys import KeyRing, parse_verifier_key
from provenance.manifests import SignedManifest, verify_manifest
from provenance.records import format_timestamp


@dataclass(frozen=True, slots=True)
class ManifestView:
    stored: StoredManifest
    signed: SignedManifest
    verified: bool
    verify_reason: str
    versions: list[StoredManifest]


async def view_manifest(ctx: AdminContext, manifest_id: str) -> ManifestView:
    """The version, its signature checked against every key its creator ever had, and its
    lineage's versions; NotFoundError/FormatError for a bad or unknown id."""
    registry = ctx.registry
    stored = await registry.manifest(manifest_id)
    signed = await registry.signed_manifest(manifest_id)
    keys = await ctx.coordinator.store.creator_keys(stored.creator)
    reason = ""
    try:
        verify_manifest(signed, KeyRing(parse_verifier_key(k.verifier) for k in keys))
    except CachetError as exc:
        reason = f"{reason_of(exc)}: {exc}"
    if any(k.key_id == stored.key_id and k.revoked_at for k in keys) and not reason:
        reason = "signed by a key that has since been revoked"
    versions = await ctx.queries.lineage_versions(stored.lineage)
    return ManifestView(stored, signed, not reason, reason, versions)


async def creators(request: web.Request) -> web.Response:
    session = await require_session(request, ADMIN_AREA)
    ctx = admin_context(request)
    query = request.query.get("q", "").strip()[:64]
    everyone = await ctx.registry.list_creators()
    matching = [c for c in everyone if query.lower() in c.account.lower()]
    page = page_of(request, len(matching))
    portal_users = await ctx.store.creator_users()
    return render(
        request,
        "creators.html",
        session,
        creators=page.slice(matching),
        page=page,
        q=query,
        portal_users=portal_users,
        total=len(everyone),
    )


async def _creator_page(request: web.Request, **extra: Any) -> web.Response:
    session = await require_session(request, ADMIN_AREA)
    ctx = admin_context(request)
    account = request.match_info["account"]
    info = [c for c in await ctx.registry.list_creators() if c.account == account]
    if not info:
        raise web.HTTPNotFound(text="no such creator\n")
    manifests = await ctx.queries.manifests_of(account)
    page = page_of(request, len(manifests))
    has_portal = account in await ctx.store.creator_users()
    return render(
        request,
        "creator.html",
        session,
        creator=info[0],
        page=page,
        manifests=page.slice(manifests),
        has_portal=has_portal,
        **extra,
    )


async def creator(request: web.Request) -> web.Response:
    return await _creator_page(request)


async def set_creator_password(ctx: AdminContext, account: str, password: str) -> bool:
    """Create or update the portal user of ``account`` (username = account); True if created.
    ValueError for a weak password, LookupError for an unknown creator."""
    check_password_policy(password)
    if account not in {c.account for c in await ctx.registry.list_creators()}:
        raise LookupError("no such creator")
    now = format_timestamp(ctx.clock())
    hashed = hash_password(password, secrets.token_bytes(16), ctx.settings.log2_n)
    existing = await ctx.store.find_user(account)
    if existing is not None:
        if existing.role != CREATOR:
            raise ValueError("that name belongs to an admin user")
        await ctx.store.set_password(account, hashed, now)
        return False
    try:
        await ctx.store.add_user(UiUser(account, CREATOR, account, hashed, now))
    except UserExistsError:
        await ctx.store.set_password(account, hashed, now)
        return False
    return True


async def creator_password(request: web.Request) -> web.Response:
    session = await require_session(request, ADMIN_AREA)
    form = await checked_form(request, session)
    account = request.match_info["account"]
    try:
        await set_creator_password(admin_context(request), account, form.get("password", ""))
    except (ValueError, LookupError) as exc:
        return await _creator_page(request, error=str(exc))
    await record_audit(request, session.user.username, "set-creator-password", account)
    raise web.HTTPFound(f"/admin/creators/{account}?msg=password-set")


async def _manifest_page(request: web.Request, **extra: Any) -> web.Response:
    session = await require_session(request, ADMIN_AREA)
    try:
        view = await view_manifest(admin_context(request), request.match_info["manifest_id"])
    except CachetError:
        raise web.HTTPNotFound(text="no such manifest\n") from None
    return render(request, "manifest.html", session, view=view, area="admin", **extra)


async def manifest(request: web.Request) -> web.Response:
    return await _manifest_page(request)


async def manifest_revoke(request: web.Request) -> web.Response:
    session = await require_session(request, ADMIN_AREA)
    form = await checked_form(request, session)
    manifest_id = request.match_info["manifest_id"]
    grace = form.get("grace_s", "0")
    try:
        await admin_context(request).registry.revoke(
            manifest_id,
            form.get("reason", ""),
            int(grace) if grace.isdigit() else -1,
            Actor(None),
        )
    except CachetError as exc:
        return await _manifest_page(request, error=f"Not revoked: {reason_of(exc)}: {exc}")
    await record_audit(
        request,
        session.user.username,
        "revoke-manifest",
        manifest_id,
        f"grace {grace} s: {form.get('reason', '')}",
    )
    raise web.HTTPFound(f"/admin/manifests/{manifest_id}?msg=revoked-manifest")
