"""The statement a creator should get, worked out from the traffic a test sent and the pricing
rules, with plain integer arithmetic (docs/billing.md §2-§4). Deliberately NOT the billing
engine (``billing.pricing`` / ``billing.statements``): an independent second reading of the
documented rules, so the two can disagree.

The rules used, as docs/billing.md states them:
- only GET answers bill: a HEAD answer serves no content (§1, billable outcomes);
- a line per content id x manifest x use; `hits` are requests answered from the cache (hit,
  stale, revalidated); `bytes_served` what the client got, `bytes_from_cache` those of hits;
- exact = (hits x per_hit + GB x per_gb + GB from cache x max(0, origin - edge cost per GB) x
  savings_share) x quality, GB = 10^9 bytes; each line rounded once, to the nearest micro, ties
  to even; a manifest's payout terms in the platform's currency replace the view rates (the
  savings share stays the platform's); quality by content id, then creator, else 1;
- fee = round(gross x bps / 10,000); net = gross - fee; available = carried_in + net is paid
  when it reaches the minimum payout (and is positive), else it all carries forward;
- the statement's sha256 is over its RFC 8785 canonical JSON without the `sha256` field.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

MICROS = 1_000_000
BYTES_PER_GB = 10**9
BASIS_POINTS = 10_000


@dataclass(frozen=True)
class Served:
    """One answer the client saw for the creator's content (2xx, from the cache or the origin):
    which content, for which use, from the cache or not, how many body bytes, and the method."""

    content_id: str
    use: str
    from_cache: bool
    body_bytes: int
    method: str = "GET"

    @property
    def bills(self) -> bool:
        """docs/billing.md §1: HEAD serves no content, so it is not billable."""
        return self.method == "GET"


def ratio(text: str) -> tuple[int, int]:
    """A non-negative decimal string as an exact ratio: "0.15" -> (15, 100)."""
    whole, _, fraction = text.partition(".")
    assert (whole + fraction).isdigit(), f"not a plain decimal: {text!r}"
    return int(whole + fraction), 10 ** len(fraction)


def micros(text: str) -> int:
    """Money text in micro-units: "0.00001" -> 10 (at most 6 decimals, never rounded)."""
    numerator, denominator = ratio(text)
    assert MICROS % denominator == 0, f"more than 6 decimals: {text!r}"
    return numerator * (MICROS // denominator)


def round_half_even(numerator: int, denominator: int) -> int:
    quotient, remainder = divmod(numerator, denominator)
    if 2 * remainder > denominator or (2 * remainder == denominator and quotient % 2 == 1):
        quotient += 1
    return quotient


def timestamp(moment: datetime) -> str:
    """RFC 3339, UTC, milliseconds (the record and statement form)."""
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def line_amount(
    hits: int, bytes_served: int, bytes_from_cache: int, rates: Mapping[str, Any],
    pricing: Mapping[str, Any], quality: str,
) -> int:  # fmt: skip
    per_hit = rates["per_hit_micros"]
    per_gb = rates["per_gb_micros"]
    share_n, share_d = ratio(rates["savings_share"])
    saved_per_gb = max(
        0,
        micros(pricing.get("origin_cost_per_gb", "0"))
        - micros(pricing.get("edge_cost_per_gb", "0")),
    )
    quality_n, quality_d = ratio(quality)
    # Everything over one common denominator: BYTES_PER_GB x share_d x quality_d.
    exact = (
        hits * per_hit * BYTES_PER_GB * share_d
        + bytes_served * per_gb * share_d
        + bytes_from_cache * saved_per_gb * share_n
    ) * quality_n
    return round_half_even(exact, BYTES_PER_GB * share_d * quality_d)


def _rates(
    use: str, pricing: Mapping[str, Any], terms: Mapping[str, Any]
) -> tuple[dict[str, Any], str]:
    """The rates of a line and where they come from (``rates_source``)."""
    table = pricing.get(use, {})
    share = table.get("savings_share", "0")
    if use == "view" and terms["currency"] == pricing.get("currency", "USD"):
        per_hit, per_gb, source = terms["per_hit_micros"], terms["per_gb_micros"], "manifest"
    else:
        per_hit = micros(table.get("per_hit", "0"))
        per_gb = micros(table.get("per_gb", "0"))
        source = "platform"
    return {"per_hit_micros": per_hit, "per_gb_micros": per_gb, "savings_share": share}, source


def expected_statement(
    *,
    creator: str,
    manifest_id: str,
    terms: Mapping[str, Any],
    pricing: Mapping[str, Any],
    hour_start: datetime,
    served: Iterable[Served],
    carried_in_micros: int = 0,
) -> dict[str, Any]:
    """The statement of one hour for ``creator`` (all ``served`` billing to ``manifest_id``,
    unsampled, none late), in the API's JSON form without its ``sha256``."""
    totals: dict[tuple[str, str], list[int]] = {}
    for s in (s for s in served if s.bills):
        t = totals.setdefault((s.content_id, s.use), [0, 0, 0, 0])
        t[0] += 1
        t[1] += s.from_cache
        t[2] += s.body_bytes
        t[3] += s.body_bytes if s.from_cache else 0
    quality_of = pricing.get("quality", {})
    lines: list[dict[str, Any]] = []
    for (content_id, use), (requests, hits, served_bytes, cache_bytes) in sorted(totals.items()):
        rates, source = _rates(use, pricing, terms)
        quality = quality_of.get(content_id, quality_of.get(creator, "1"))
        lines.append({
            "content_id": content_id, "manifest_id": manifest_id, "use": use,
            "adjustment_of": None, "requests": str(requests), "hits": str(hits),
            "bytes_served": str(served_bytes), "bytes_from_cache": str(cache_bytes),
            "sample_rates": ["1"], "requests_std_error": "0", "rates_source": source,
            "amount_micros": line_amount(hits, served_bytes, cache_bytes, rates, pricing, quality),
        })  # fmt: skip
    gross = sum(line["amount_micros"] for line in lines)
    fee = round_half_even(gross * pricing.get("platform_fee_bps", 0), BASIS_POINTS)
    net = gross - fee
    available = carried_in_micros + net
    paid = available > 0 and available >= micros(pricing.get("minimum_payout", "0"))
    return {
        "creator": creator, "currency": pricing.get("currency", "USD"),
        "period": {"kind": "hour", "start": timestamp(hour_start),
                   "end": timestamp(hour_start + timedelta(hours=1))},
        "lines": lines, "gross_micros": gross, "fee_micros": fee, "net_micros": net,
        "carried_in_micros": carried_in_micros, "payout_micros": available if paid else 0,
        "carry_out_micros": 0 if paid else available,
    }  # fmt: skip


def statement_hash(statement: Mapping[str, Any]) -> str:
    """SHA-256 of the RFC 8785 canonical JSON without ``sha256``. For a statement (ASCII keys,
    strings, integers, lists, null: no floats) RFC 8785 is sorted keys and no whitespace."""
    body = {k: v for k, v in statement.items() if k != "sha256"}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
