"""`cachet billing estimate`: the pricing engine (``billing.pricing``) on assumed traffic, for
hosts and creators deciding whether to join. Exact arithmetic; each figure rounded once.

    cachet billing estimate --gb-per-day 100 --hit-ratio 0.9 --origin-cost-per-gb 0.08 \\
        --edge-cost-per-gb 0.02 --share 0.15
    cachet billing estimate --requests-per-day 25000000 --object-size 3.2MB --hit-ratio 0.85 \\
        --origin-cost-per-gb 0.09 --edge-cost-per-gb 0.02 --share 0.12 --platform-fee 0.20 --json

A month is 30 days. GB = 10^9 bytes. The platform fee is charged on the creators' share.
"""

from __future__ import annotations

import argparse
import json
import sys
from fractions import Fraction
from typing import Any

from billing.money import format_micros, parse_fraction, parse_micros
from billing.pricing import (
    BYTES_PER_GB,
    PricingRules,
    Rates,
    Usage,
    platform_fee_micros,
    price_line,
    savings_micros,
)
from provenance.errors import FormatError

DAYS_PER_MONTH = 30
_UNITS = {"B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "KIB": 2**10, "MIB": 2**20, "GIB": 2**30}


def parse_size_bytes(text: str) -> Fraction:
    """``3.2MB`` (decimal units) or ``512KiB``; a bare number is bytes."""
    upper = text.strip().upper()
    unit = next((u for u in sorted(_UNITS, key=len, reverse=True) if upper.endswith(u)), "B")
    number = upper[: len(upper) - len(unit)] if upper.endswith(unit) else upper
    return parse_fraction(number.strip(), what="--object-size") * _UNITS[unit]


def estimate(
    bytes_per_day: Fraction, hit_ratio: Fraction, rules: PricingRules
) -> dict[str, dict[str, str]]:
    """Savings, creators' gross share, platform fee and net, per day and per month."""
    out: dict[str, dict[str, str]] = {}
    for name, days in (("day", 1), ("month", DAYS_PER_MONTH)):
        served = bytes_per_day * days
        cached = served * hit_ratio
        usage = Usage(hits=Fraction(0), bytes_served=served, bytes_from_cache=cached)
        gross = price_line(usage, use="view", content_id="", creator="", rules=rules)
        fee = platform_fee_micros(gross.amount_micros, rules)
        out[name] = {
            "gb_served": str(round(served / BYTES_PER_GB, 3)),
            "gb_from_cache": str(round(cached / BYTES_PER_GB, 3)),
            "savings": format_micros(round(savings_micros(cached, rules))),
            "creator_share": format_micros(gross.amount_micros),
            "platform_fee": format_micros(fee),
            "creator_payout": format_micros(gross.amount_micros - fee),
        }
    return out


def _rules(args: argparse.Namespace) -> PricingRules:
    share = parse_fraction(args.share, what="--share")
    fee = parse_fraction(args.platform_fee, what="--platform-fee")
    if share > 1 or fee > 1:
        raise FormatError("--share and --platform-fee are fractions between 0 and 1")
    bps = fee * 10_000
    if bps.denominator != 1:
        raise FormatError("--platform-fee: at most 4 decimals (basis points)")
    return PricingRules(
        currency=args.currency,
        view=Rates(savings_share=share),
        origin_cost_per_gb_micros=parse_micros(args.origin_cost_per_gb),
        edge_cost_per_gb_micros=parse_micros(args.edge_cost_per_gb),
        platform_fee_bps=int(bps),
    )


def _bytes_per_day(args: argparse.Namespace) -> Fraction:
    if args.gb_per_day is not None:
        return parse_fraction(args.gb_per_day, what="--gb-per-day") * BYTES_PER_GB
    if args.requests_per_day is None or args.object_size is None:
        raise FormatError("give --gb-per-day, or --requests-per-day and --object-size")
    requests = parse_fraction(args.requests_per_day, what="--requests-per-day")
    return requests * parse_size_bytes(args.object_size)


def _run_estimate(args: argparse.Namespace) -> int:
    try:
        hit_ratio = parse_fraction(args.hit_ratio, what="--hit-ratio")
        if hit_ratio > 1:
            raise FormatError("--hit-ratio is a fraction between 0 and 1")
        result: dict[str, Any] = estimate(_bytes_per_day(args), hit_ratio, _rules(args))
    except FormatError as exc:
        print(f"cachet billing estimate: {exc}", file=sys.stderr)
        return 2
    result["currency"] = args.currency
    if args.json:
        print(json.dumps(result, sort_keys=True))
        return 0
    for name in ("day", "month"):
        r = result[name]
        print(f"per {name}: {r['gb_from_cache']} GB from cache of {r['gb_served']} GB;"
              f" savings {r['savings']} {args.currency}; creators {r['creator_share']}"
              f" (fee {r['platform_fee']}, payout {r['creator_payout']})")  # fmt: skip
    return 0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("billing", help="billing tools (what-if estimates)")
    actions = parser.add_subparsers(dest="billing_action", metavar="ACTION", required=True)
    est = actions.add_parser(
        "estimate", help="savings and creator payout on assumed traffic", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    est.add_argument("--gb-per-day", metavar="GB", help="GB (10^9 bytes) served per day")
    est.add_argument("--requests-per-day", metavar="N", help="requests per day (with size)")
    est.add_argument("--object-size", metavar="SIZE", help="mean object size, e.g. 3.2MB")
    est.add_argument("--hit-ratio", metavar="R", default="0.9", help="share served from cache")
    est.add_argument("--origin-cost-per-gb", metavar="AMOUNT", default="0.08")
    est.add_argument("--edge-cost-per-gb", metavar="AMOUNT", default="0.02")
    est.add_argument("--share", metavar="R", default="0.15", help="creators' share of savings")
    est.add_argument("--platform-fee", metavar="R", default="0", help="fee on creators' share")
    est.add_argument("--currency", default="USD")
    est.add_argument("--json", action="store_true", help="print machine-readable output")
    est.set_defaults(handler=_run_estimate)


def read_billing_tables(path: str | None) -> tuple[dict[str, Any] | None, float]:
    """The ``[pricing]`` table (validated; None if absent) and ``[billing]``'s
    ``attribution_interval_s`` (default 5) of the coordinator's TOML config file."""
    import tomllib
    from pathlib import Path

    from billing.config import ConfigError
    from billing.pricing import parse_pricing

    if path is None:
        return None, 5.0
    try:
        document = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        pricing = document.get("pricing")
        if pricing is not None:
            parse_pricing(pricing)
        interval = document.get("billing", {}).get("attribution_interval_s", 5.0)
    except (OSError, tomllib.TOMLDecodeError, FormatError, AttributeError) as exc:
        raise ConfigError(f"config file {path}: {exc}") from None
    if not isinstance(interval, int | float) or interval <= 0:
        raise ConfigError("billing.attribution_interval_s must be a number > 0")
    return pricing, float(interval)
