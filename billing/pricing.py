"""Pricing rules (issue 6 "Pricing rules"): what a line of usage earns its creator. Pure.

A line's exact amount, in micros (``Fraction``; rounded once, by the statement, per line)::

    (hits x per_hit_micros
     + GB served x per_gb_micros
     + GB served from cache x max(0, origin_cost_per_gb - edge_cost_per_gb) x savings_share)
    x quality multiplier

GB = 10^9 bytes (decimal, as cloud egress is priced), never 2^30. Views use the ``view`` rates,
``training`` use the ``training`` rates. A manifest's ``payout_terms`` (per hit, per GB) replace
the platform's view rates for that manifest's lines when they are in the platform's currency;
terms in another currency are not converted: the platform's rates apply and the line says so
(``rates_source``). The quality multiplier is looked up by content id, then by creator, else 1.

The platform fee (basis points) is charged on a creator's gross for the period, as its own
statement line: fee = round(gross x fee_bps / 10,000); net = gross - fee. The minimum payout
and carry-forward are applied by ``billing.statements``.

Config (a TOML ``[pricing]`` section as a dict; money as decimal strings, never floats)::

    currency = "USD"                 origin_cost_per_gb = "0.08"   edge_cost_per_gb = "0.02"
    platform_fee_bps = 2000          minimum_payout = "10.00"
    [pricing.view]      per_hit = "0.00001"  per_gb = "0.01"  savings_share = "0.15"
    [pricing.training]  per_hit = "0.0001"   per_gb = "0.05"  savings_share = "0"
    [pricing.quality]   "sha256:<hex>" = "1.5"   alice = "1.1"
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from fractions import Fraction

from billing.money import (
    BASIS_POINTS,
    MoneyFormatError,
    parse_currency,
    parse_fraction,
    parse_micros,
    round_to_micros,
)
from provenance.manifests import PayoutTerms

BYTES_PER_GB = 10**9  # decimal gigabyte, as egress is priced
USES = ("view", "training")
_TOP_KEYS = frozenset({"currency", "origin_cost_per_gb", "edge_cost_per_gb", "platform_fee_bps"})
_TOP_KEYS |= {"minimum_payout", "view", "training", "quality"}
_RATE_KEYS = frozenset({"per_hit", "per_gb", "savings_share"})


class PricingConfigError(MoneyFormatError):
    """The pricing section of the config is malformed; the message names the key."""


@dataclass(frozen=True, slots=True)
class Rates:
    per_hit_micros: int = 0
    per_gb_micros: int = 0
    savings_share: Fraction = Fraction(0)


@dataclass(frozen=True, slots=True)
class PricingRules:
    currency: str = "USD"
    view: Rates = Rates()
    training: Rates = Rates()
    origin_cost_per_gb_micros: int = 0
    edge_cost_per_gb_micros: int = 0
    platform_fee_bps: int = 0
    minimum_payout_micros: int = 0
    quality_multipliers: Mapping[str, Fraction] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Usage:
    """What one statement line prices: exact (possibly scaled) quantities."""

    hits: Fraction
    bytes_served: Fraction
    bytes_from_cache: Fraction


@dataclass(frozen=True, slots=True)
class LinePrice:
    """The exact parts of a line and its one rounding into ``amount_micros``."""

    hits_micros: Fraction
    served_micros: Fraction
    savings_share_micros: Fraction
    multiplier: Fraction
    exact_micros: Fraction
    amount_micros: int
    rates_source: str


def savings_micros(bytes_from_cache: Fraction | int, rules: PricingRules) -> Fraction:
    """Origin egress saved: (origin - edge cost per GB) x GB served from cache, never < 0."""
    per_gb = max(0, rules.origin_cost_per_gb_micros - rules.edge_cost_per_gb_micros)
    return Fraction(bytes_from_cache) * per_gb / BYTES_PER_GB


def rates_for(use: str, rules: PricingRules, terms: PayoutTerms | None) -> tuple[Rates, str]:
    """The rates a line uses and where they came from (``platform`` or ``manifest``)."""
    if use == "training":
        return rules.training, "platform"
    if use != "view":
        raise ValueError(f"unknown use {use!r}")
    if terms is None:
        return rules.view, "platform"
    if terms.currency != rules.currency:
        return rules.view, f"platform (manifest terms in {terms.currency} not applied)"
    share = rules.view.savings_share
    return Rates(terms.per_hit_micros, terms.per_gb_micros, share), "manifest"


def quality_multiplier(content_id: str, creator: str, rules: PricingRules) -> Fraction:
    """By content id, then by creator, else 1."""
    found = rules.quality_multipliers.get(content_id, rules.quality_multipliers.get(creator))
    return Fraction(1) if found is None else found


def price_line(
    usage: Usage,
    *,
    use: str,
    content_id: str,
    creator: str,
    rules: PricingRules,
    terms: PayoutTerms | None = None,
) -> LinePrice:
    """Price one line exactly and round it once (``billing.money.round_to_micros``)."""
    rates, source = rates_for(use, rules, terms)
    hits = usage.hits * rates.per_hit_micros
    served = usage.bytes_served * rates.per_gb_micros / BYTES_PER_GB
    share = savings_micros(usage.bytes_from_cache, rules) * rates.savings_share
    multiplier = quality_multiplier(content_id, creator, rules)
    exact = (hits + served + share) * multiplier
    return LinePrice(hits, served, share, multiplier, exact, round_to_micros(exact), source)


def platform_fee_micros(gross_micros: int, rules: PricingRules) -> int:
    """The platform fee line: round(gross x fee_bps / 10,000), rounded once."""
    return round_to_micros(Fraction(gross_micros * rules.platform_fee_bps, BASIS_POINTS))


def _money(section: Mapping[str, object], key: str, where: str) -> int:
    value = section.get(key, "0")
    try:
        micros = parse_micros(value)  # type: ignore[arg-type]
    except MoneyFormatError as exc:
        raise PricingConfigError(f"{where}.{key}: {exc} (write money as a string)") from None
    if micros < 0:
        raise PricingConfigError(f"{where}.{key}: must not be negative")
    return micros


def _ratio(value: object, where: str) -> Fraction:
    try:
        return parse_fraction(value, what=where)  # type: ignore[arg-type]
    except MoneyFormatError as exc:
        raise PricingConfigError(str(exc)) from None


def _table(section: Mapping[str, object], key: str, where: str) -> Mapping[str, object]:
    value = section.get(key, {})
    if not isinstance(value, Mapping):
        raise PricingConfigError(f"{where}.{key}: must be a table")
    return value


def _check_keys(section: Mapping[str, object], allowed: frozenset[str], where: str) -> None:
    unknown = sorted(set(section) - allowed)
    if unknown:
        raise PricingConfigError(f"{where}: unknown key(s) {', '.join(unknown)}")


def _parse_rates(section: Mapping[str, object], where: str) -> Rates:
    _check_keys(section, _RATE_KEYS, where)
    share = _ratio(section.get("savings_share", "0"), f"{where}.savings_share")
    if share > 1:
        raise PricingConfigError(f"{where}.savings_share: must be between 0 and 1")
    return Rates(_money(section, "per_hit", where), _money(section, "per_gb", where), share)


def _parse_bps(section: Mapping[str, object], where: str) -> int:
    bps = section.get("platform_fee_bps", 0)
    if type(bps) is not int or not 0 <= bps <= BASIS_POINTS:
        raise PricingConfigError(f"{where}.platform_fee_bps: an integer 0..10000 (2000 = 20%)")
    return bps


def parse_pricing(section: Mapping[str, object], where: str = "pricing") -> PricingRules:
    """PricingRules from a ``[pricing]`` TOML table; PricingConfigError naming the bad key."""
    if not isinstance(section, Mapping):
        raise PricingConfigError(f"{where}: must be a table")
    _check_keys(section, _TOP_KEYS, where)
    try:
        currency = parse_currency(section.get("currency", "USD"))  # type: ignore[arg-type]
    except MoneyFormatError as exc:
        raise PricingConfigError(f"{where}.currency: {exc}") from None
    quality = _table(section, "quality", where)
    multipliers = {str(k): _ratio(v, f"{where}.quality.{k}") for k, v in quality.items()}
    return PricingRules(
        currency=currency,
        view=_parse_rates(_table(section, "view", where), f"{where}.view"),
        training=_parse_rates(_table(section, "training", where), f"{where}.training"),
        origin_cost_per_gb_micros=_money(section, "origin_cost_per_gb", where),
        edge_cost_per_gb_micros=_money(section, "edge_cost_per_gb", where),
        platform_fee_bps=_parse_bps(section, where),
        minimum_payout_micros=_money(section, "minimum_payout", where),
        quality_multipliers=multipliers,
    )
