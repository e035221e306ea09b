"""Pricing (issue 6 "Pricing rules" and "Worked examples as tests"): per hit, per GB, a share of
origin egress saved, training rates, quality multipliers, platform fee, manifest overrides,
config parsed with clear errors; the article's worked examples reproduced exactly."""

from __future__ import annotations

from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from billing.money import round_to_micros
from billing.pricing import (
    PricingConfigError,
    PricingRules,
    Rates,
    Usage,
    parse_pricing,
    platform_fee_micros,
    price_line,
    savings_micros,
)
from provenance.manifests import PayoutTerms

GB = 10**9
CID = "sha256:" + "a" * 64


def _price(usage: Usage, rules: PricingRules, use: str = "view", terms: PayoutTerms | None = None):
    return price_line(usage, use=use, content_id=CID, creator="alice", rules=rules, terms=terms)


def test_worked_example_one_savings_and_creator_share_per_day() -> None:
    """Issue 6 worked example: origin $0.08/GB, edge $0.02/GB, 100 GB/day, 90% from cache,
    creators paid 15% of the savings: savings $5.40/day, creator $0.81/day."""
    rules = parse_pricing(
        {"origin_cost_per_gb": "0.08", "edge_cost_per_gb": "0.02",
         "view": {"savings_share": "0.15"}}
    )  # fmt: skip
    usage = Usage(
        hits=Fraction(0), bytes_served=Fraction(100 * GB), bytes_from_cache=Fraction(90 * GB)
    )
    assert savings_micros(usage.bytes_from_cache, rules) == 5_400_000
    line = _price(usage, rules)
    assert line.amount_micros == 810_000
    assert platform_fee_micros(line.amount_micros, rules) == 0


def test_worked_example_two_month_of_savings_share_and_platform_fee() -> None:
    """Issue 6 worked example: origin $0.09/GB, edge $0.02/GB, 69,000 GB/month from cache,
    12% of savings to creators, 20% marketplace fee: savings $4,830/month, creators' share
    about $580/month. The fee applies to the creators' gross share (docs/billing.md): the share
    is $579.60 before the fee, the fee $115.92, creators receive $463.68."""
    rules = parse_pricing(
        {"origin_cost_per_gb": "0.09", "edge_cost_per_gb": "0.02", "platform_fee_bps": 2000,
         "view": {"savings_share": "0.12"}}
    )  # fmt: skip
    cached = Fraction(69_000 * GB)
    assert savings_micros(cached, rules) == 4_830_000_000
    line = _price(Usage(Fraction(0), cached, cached), rules)
    assert line.amount_micros == 579_600_000
    assert abs(line.amount_micros - 580_000_000) < 1_000_000  # "about $580/month"
    fee = platform_fee_micros(line.amount_micros, rules)
    assert fee == 115_920_000
    assert line.amount_micros - fee == 463_680_000


def test_per_hit_per_gb_and_quality_multiplier() -> None:
    rules = PricingRules(view=Rates(per_hit_micros=10, per_gb_micros=20_000),
                         quality_multipliers={CID: Fraction(3, 2)})  # fmt: skip
    line = _price(Usage(Fraction(1000), Fraction(5 * GB), Fraction(0)), rules)
    assert line.hits_micros == 10_000 and line.served_micros == 100_000
    assert line.amount_micros == 165_000 and line.multiplier == Fraction(3, 2)


def test_quality_multiplier_by_creator_when_content_has_none() -> None:
    rules = PricingRules(view=Rates(per_hit_micros=10), quality_multipliers={"alice": Fraction(2)})
    assert _price(Usage(Fraction(1), Fraction(0), Fraction(0)), rules).amount_micros == 20


def test_training_use_has_its_own_rates_and_ignores_manifest_view_terms() -> None:
    rules = PricingRules(view=Rates(per_hit_micros=1), training=Rates(per_hit_micros=100))
    terms = PayoutTerms(per_hit_micros=5, per_gb_micros=0)
    usage = Usage(Fraction(10), Fraction(0), Fraction(0))
    assert _price(usage, rules, "training", terms).amount_micros == 1000
    assert _price(usage, rules, "view", terms).amount_micros == 50
    assert _price(usage, rules, "view", terms).rates_source == "manifest"


def test_manifest_terms_in_another_currency_are_not_applied() -> None:
    rules = PricingRules(view=Rates(per_hit_micros=1))
    line = _price(Usage(Fraction(10), Fraction(0), Fraction(0)), rules,
                  terms=PayoutTerms(per_hit_micros=5, per_gb_micros=0, currency="EUR"))  # fmt: skip
    assert line.amount_micros == 10 and "EUR" in line.rates_source


def test_no_savings_when_edge_costs_more_than_origin() -> None:
    rules = PricingRules(origin_cost_per_gb_micros=1, edge_cost_per_gb_micros=5)
    assert savings_micros(GB, rules) == 0


@given(
    st.fractions(min_value=0, max_value=10**9, max_denominator=10**6),
    st.fractions(min_value=0, max_value=10**13, max_denominator=10**6),
    st.integers(0, 10**6),
    st.integers(0, 10**6),
)
@settings(max_examples=100, deadline=None)
def test_a_line_is_rounded_exactly_once(
    hits: Fraction, size: Fraction, hit_rate: int, gb_rate: int
) -> None:
    """Issue 6: "one documented rounding rule applied once per statement line"."""
    rules = PricingRules(
        view=Rates(hit_rate, gb_rate, Fraction(1, 7)), origin_cost_per_gb_micros=90_000
    )
    line = _price(Usage(hits, size, size), rules)
    assert line.exact_micros == line.hits_micros + line.served_micros + line.savings_share_micros
    assert line.amount_micros == round_to_micros(line.exact_micros)


@pytest.mark.parametrize(
    ("section", "needle"),
    [
        ({"currency": "usd"}, "pricing.currency"),
        ({"origin_cost_per_gb": 0.08}, "pricing.origin_cost_per_gb"),
        ({"edge_cost_per_gb": "-1"}, "pricing.edge_cost_per_gb"),
        ({"platform_fee_bps": "20%"}, "pricing.platform_fee_bps"),
        ({"platform_fee_bps": 10001}, "pricing.platform_fee_bps"),
        ({"view": {"per_hit": "0.0000001"}}, "pricing.view.per_hit"),
        ({"view": {"savings_share": "1.5"}}, "pricing.view.savings_share"),
        ({"training": {"per_byte": "1"}}, "pricing.training"),
        ({"quality": {"alice": 1.2}}, "pricing.quality.alice"),
        ({"view": "cheap"}, "pricing.view"),
        ({"fees": 1}, "unknown key(s) fees"),
    ],
)
def test_config_errors_name_the_key(section: dict[str, object], needle: str) -> None:
    with pytest.raises(PricingConfigError, match=needle.replace("(", r"\(").replace(")", r"\)")):
        parse_pricing(section)


def test_config_parses_every_key() -> None:
    rules = parse_pricing({
        "currency": "EUR", "origin_cost_per_gb": "0.09", "edge_cost_per_gb": "0.02",
        "platform_fee_bps": 2000, "minimum_payout": "10.00",
        "view": {"per_hit": "0.00001", "per_gb": "0.01", "savings_share": "0.12"},
        "training": {"per_hit": "0.0001"}, "quality": {CID: "1.5"},
    })  # fmt: skip
    assert rules == PricingRules(
        "EUR", Rates(10, 10_000, Fraction(12, 100)), Rates(100, 0, Fraction(0)),
        90_000, 20_000, 2000, 10_000_000, {CID: Fraction(3, 2)},
    )  # fmt: skip
