"""Cache-Status (RFC 9211) and nginx's X-Cache-Status vocabulary, from one outcome value.

One vocabulary for outcomes across headers, records and metrics (STYLE.md): `Outcome.cache` is
the record's `cache` field, `Outcome.x_cache` is nginx's word, and `cache_status()` renders the
RFC 9211 member for this cache.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Outcome:
    cache: str  # record vocabulary: hit | miss | stale | revalidated | bypass | error
    x_cache: str  # nginx: HIT | MISS | EXPIRED | STALE | UPDATING | REVALIDATED | BYPASS
    hit: bool  # RFC 9211 §2.1: answered from cache without going forward
    fwd: str | None = (
        None  # RFC 9211 §2.2: bypass | method | uri-miss | vary-miss | miss | request | stale
    )
    detail: str | None = None  # RFC 9211 §2.8


HIT = Outcome("hit", "HIT", True)
STALE_ACCEPTED = Outcome("stale", "STALE", True, detail="max-stale")
UPDATING = Outcome("stale", "UPDATING", True, detail="stale-while-revalidate")
STALE_IF_ERROR = Outcome("stale", "STALE", False, fwd="stale", detail="stale-if-error")
REVALIDATED = Outcome("revalidated", "REVALIDATED", False, fwd="stale")
EXPIRED = Outcome("miss", "EXPIRED", False, fwd="stale")
URI_MISS = Outcome("miss", "MISS", False, fwd="uri-miss")
VARY_MISS = Outcome("miss", "MISS", False, fwd="vary-miss")
REQUEST_MISS = Outcome("miss", "MISS", False, fwd="request")
METHOD = Outcome("bypass", "BYPASS", False, fwd="method")
BYPASS = Outcome("bypass", "BYPASS", False, fwd="bypass")
ONLY_IF_CACHED_MISS = Outcome("miss", "MISS", False, detail="only-if-cached")


def cache_status(
    name: str,
    outcome: Outcome,
    *,
    ttl_s: float | None = None,
    fwd_status: int | None = None,
    stored: bool = False,
    collapsed: bool = False,
    detail: str | None = None,
) -> str:
    """One Cache-Status list member: `name; hit; ttl=12` or `name; fwd=uri-miss; stored`."""
    parts = [name]
    if outcome.hit:
        parts.append("hit")
    if outcome.fwd is not None:
        parts.append(f"fwd={outcome.fwd}")
    if fwd_status is not None:
        parts.append(f"fwd-status={fwd_status}")
    if ttl_s is not None:
        parts.append(f"ttl={int(ttl_s) if ttl_s >= 0 else -int(-ttl_s + 0.999999)}")
    if stored:
        parts.append("stored")
    if collapsed:
        parts.append("collapsed")
    shown_detail = detail or outcome.detail
    if shown_detail:
        parts.append(f"detail={_sf_token_or_string(shown_detail)}")
    return "; ".join(parts)


def _sf_token_or_string(value: str) -> str:
    """RFC 8941: a token if it is one, else a quoted string; an sf-string holds only printable
    ASCII (§3.3.3), so any other character becomes "?"."""
    if (
        value.isascii()
        and value
        and (value[0].isalpha() or value[0] == "*")
        and all(c.isalnum() or c in "!#$%&'*+-.^_`|~:/" for c in value)
    ):
        return value
    printable = "".join(c if " " <= c <= "~" else "?" for c in value)
    escaped = printable.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'
