"""The wrk report parser the hit bench relies on (run: .venv/bin/pytest bench/test_wrkrun.py)."""

from __future__ import annotations

import math

import pytest
from wrkrun import WrkError, compute_busy, parse_report

REPORT = """Running 3s test @ http://127.0.0.1:18500/obj-1k
  1 threads and 50 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     1.17ms    0.90ms  33.93ms   98.33%
    Req/Sec    42.71k     7.85k   59.63k    64.52%
  Latency Distribution
     50%  871.00us
     75%    1.47ms
     90%    1.59ms
     99%    1.02s
  131384 requests in 3.10s, 153.24MB read
  Socket errors: connect 0, read 2, write 0, timeout 5
  Non-2xx or 3xx responses: 7
Requests/sec:  42385.15
Transfer/sec:     49.44MB
"""


def test_parse_report_reads_rate_percentiles_in_ms_and_errors() -> None:
    result = parse_report(REPORT)
    assert result.requests_per_s == 42385.15
    assert result.p50_ms == pytest.approx(0.871)
    assert result.p99_ms == pytest.approx(1020.0)
    assert result.requests == 131384
    assert result.non_2xx == 7
    assert result.socket_errors == 7


def test_parse_report_without_error_lines_counts_zero() -> None:
    clean = "\n".join(
        line for line in REPORT.splitlines() if "errors" not in line and "Non-2xx" not in line
    )
    result = parse_report(clean)
    assert (result.non_2xx, result.socket_errors) == (0, 0)


def test_parse_report_rejects_output_without_rate() -> None:
    with pytest.raises(WrkError):
        parse_report("unable to connect to 127.0.0.1:1 Connection refused\n")


def test_parse_report_rejects_output_without_latency_distribution() -> None:
    no_latency = "\n".join(line for line in REPORT.splitlines() if "99%" not in line)
    with pytest.raises(WrkError):
        parse_report(no_latency)


def test_compute_busy_is_busy_share_of_elapsed_jiffies() -> None:
    before = {0: (100, 1000), 1: (0, 1000)}
    after = {0: (550, 1500), 1: (0, 1000)}
    assert compute_busy(before, after, 0) == 0.9
    assert math.isnan(compute_busy(before, after, 1))
    assert math.isnan(compute_busy(before, after, 2))
