"""Run wrk pinned to one CPU and parse its report (requests/s, p99, errors)."""

from __future__ import annotations

import re
import subprocess
from dataclasses import asdict, dataclass
from typing import Any

LATENCY_UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}
RPS_RE = re.compile(r"^Requests/sec:\s+([\d.]+)\s*$", re.MULTILINE)
P99_RE = re.compile(r"^\s*99%\s+([\d.]+)(us|ms|s|m)\s*$", re.MULTILINE)
P50_RE = re.compile(r"^\s*50%\s+([\d.]+)(us|ms|s|m)\s*$", re.MULTILINE)
TOTAL_RE = re.compile(r"^\s*(\d+) requests in ", re.MULTILINE)
NON_2XX_RE = re.compile(r"^\s*Non-2xx or 3xx responses:\s+(\d+)", re.MULTILINE)
SOCKET_RE = re.compile(
    r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", re.MULTILINE
)


class WrkError(RuntimeError):
    """wrk failed or printed a report this parser does not understand."""


@dataclass(frozen=True)
class WrkResult:
    """One wrk run, reduced to what the bench compares."""

    requests_per_s: float
    p50_ms: float
    p99_ms: float
    requests: int
    non_2xx: int
    socket_errors: int

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def parse_latency_ms(pattern: re.Pattern[str], report: str) -> float:
    """Return a latency percentile line of `report` in milliseconds."""
    match = pattern.search(report)
    if match is None:
        raise WrkError(f"no latency line matching {pattern.pattern!r} in wrk output")
    return float(match.group(1)) * LATENCY_UNITS_MS[match.group(2)]


def parse_report(report: str) -> WrkResult:
    """Parse wrk's `--latency` report; raise WrkError when a required line is missing."""
    rps = RPS_RE.search(report)
    total = TOTAL_RE.search(report)
    if rps is None or total is None:
        raise WrkError("no Requests/sec line in wrk output:\n" + report)
    non_2xx = NON_2XX_RE.search(report)
    sockets = SOCKET_RE.search(report)
    return WrkResult(
        requests_per_s=float(rps.group(1)),
        p50_ms=parse_latency_ms(P50_RE, report),
        p99_ms=parse_latency_ms(P99_RE, report),
        requests=int(total.group(1)),
        non_2xx=int(non_2xx.group(1)) if non_2xx else 0,
        socket_errors=sum(int(n) for n in sockets.groups()) if sockets else 0,
    )


@dataclass(frozen=True)
class WrkSettings:
    """How wrk is run: threads, connections, duration and the CPU it is pinned to."""

    threads: int
    connections: int
    duration_s: int
    cpu: int


def run_wrk(url: str, settings: WrkSettings, duration_s: int | None = None) -> WrkResult:
    """Run wrk against `url` pinned with taskset, bounded by a timeout; return its result."""
    seconds = settings.duration_s if duration_s is None else duration_s
    command = [
        "taskset",
        "-c",
        str(settings.cpu),
        "wrk",
        f"-t{settings.threads}",
        f"-c{settings.connections}",
        f"-d{seconds}s",
        "--timeout",
        "5s",
        "--latency",
        url,
    ]
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=seconds + 30, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise WrkError(f"wrk did not finish within {seconds + 30}s") from exc
    if done.returncode != 0:
        raise WrkError(f"wrk exited {done.returncode}: {done.stderr.strip()}")
    return parse_report(done.stdout)
