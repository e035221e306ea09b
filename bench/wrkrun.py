"""Run wrk pinned to one CPU and parse its report (requests/s, p99, errors)."""

from __future__ import annotations

import re
import subprocess
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
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
    cpu_busy: dict[str, float] = field(default_factory=dict)

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


def read_cpu_times() -> dict[int, tuple[int, int]]:
    """Per-CPU (busy, total) jiffies from /proc/stat; steal counts as not busy."""
    stat = Path("/proc/stat")
    times: dict[int, tuple[int, int]] = {}
    if not stat.exists():
        return times
    for line in stat.read_text().splitlines():
        name, *fields = line.split()
        if name.startswith("cpu") and name[3:].isdigit():
            values = [int(v) for v in fields[:8]]  # guest time is already inside user
            idle_or_stolen = sum(values[3:5]) + sum(values[7:8])  # idle, iowait, steal
            times[int(name[3:])] = (sum(values) - idle_or_stolen, sum(values))
    return times


def compute_busy(
    before: dict[int, tuple[int, int]], after: dict[int, tuple[int, int]], cpu: int
) -> float:
    """Fraction of `cpu` that was busy (anyone's work) between two samples."""
    if cpu not in before or cpu not in after:
        return float("nan")
    busy = after[cpu][0] - before[cpu][0]
    total = after[cpu][1] - before[cpu][1]
    return round(busy / total, 3) if total > 0 else float("nan")


@dataclass(frozen=True)
class WrkSettings:
    """How wrk is run: threads, connections, duration and the CPU it is pinned to."""

    threads: int
    connections: int
    duration_s: int
    cpu: int
    server_cpu: int


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
    before = read_cpu_times()
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=seconds + 30, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise WrkError(f"wrk did not finish within {seconds + 30}s") from exc
    if done.returncode != 0:
        raise WrkError(f"wrk exited {done.returncode}: {done.stderr.strip()}")
    after = read_cpu_times()
    busy = {
        "server_cpu": compute_busy(before, after, settings.server_cpu),
        "wrk_cpu": compute_busy(before, after, settings.cpu),
    }
    return replace(parse_report(done.stdout), cpu_busy=busy)
