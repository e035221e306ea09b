"""`cachet billing estimate` reproduces issue 6's worked examples through the pricing engine."""

from __future__ import annotations

import json

import pytest

from cachet.cli import main


def test_estimate_first_worked_example_savings_and_creator_per_day(
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = ["billing", "estimate", "--gb-per-day", "100", "--hit-ratio", "0.9",
            "--origin-cost-per-gb", "0.08", "--edge-cost-per-gb", "0.02", "--share", "0.15",
            "--json"]  # fmt: skip
    assert main(argv) == 0
    day = json.loads(capsys.readouterr().out)["day"]
    assert (day["savings"], day["creator_share"]) == ("5.400000", "0.810000")


def test_estimate_second_worked_example_monthly_share_and_fee(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # 69,000 GB/month from cache = 2,300 GB/day at a 100 % hit ratio over 30 days
    argv = ["billing", "estimate", "--gb-per-day", "2300", "--hit-ratio", "1",
            "--origin-cost-per-gb", "0.09", "--edge-cost-per-gb", "0.02", "--share", "0.12",
            "--platform-fee", "0.20", "--json"]  # fmt: skip
    assert main(argv) == 0
    month = json.loads(capsys.readouterr().out)["month"]
    assert month["savings"] == "4830.000000"
    assert month["creator_share"] == "579.600000"
    assert (month["platform_fee"], month["creator_payout"]) == ("115.920000", "463.680000")


def test_estimate_from_requests_and_object_size(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["billing", "estimate", "--requests-per-day", "1000", "--object-size", "1MB",
            "--hit-ratio", "0.5", "--json"]  # fmt: skip
    assert main(argv) == 0
    assert json.loads(capsys.readouterr().out)["day"]["gb_served"] == "1"


def test_estimate_refuses_a_bad_ratio_with_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["billing", "estimate", "--gb-per-day", "1", "--hit-ratio", "1.5"]) == 2
    assert "--hit-ratio" in capsys.readouterr().err
