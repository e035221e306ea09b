"""Hit benchmark: `cachet proxy` against nginx proxy_cache, same object, same machine.

Each server runs pinned to one CPU, wrk to another; every object is pre-warmed until the server
says X-Cache-Status: HIT; then rounds alternate between the servers (ABBA order) and the report
compares medians and per-round ratios. See bench/README.md for the method and why ratios.

    sudo .venv/bin/python bench/hits.py                     # 5 rounds x 10 s, 1 KiB
    sudo .venv/bin/python bench/hits.py --sizes 1k,64k,1m --rounds 3
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shlex
import shutil
import signal
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

from services import (
    REPO_ROOT,
    BenchError,
    ProcessGroup,
    assert_port_free,
    ensure_tools,
    find_template,
    nginx_command,
    read_batches_posted,
    read_origin_count,
    render_nginx_conf,
    warm_until_hit,
)
from wrkrun import WrkError, WrkResult, WrkSettings, run_wrk

SIZE_PATHS = {"1k": "/obj-1k", "64k": "/obj-64k", "1m": "/obj-1m"}
DEFAULT_CACHET_CMD = (
    "{repo}/.venv/bin/cachet proxy --listen {listen} --origin {origin}"
    " --admin-listen {admin_listen} --cache-dir {cache_dir}"
)
ANCHOR, SUBJECT = "nginx", "cachet"


@dataclass(frozen=True)
class Target:
    """One server under load: its name, port and its own bench origin's port."""

    name: str
    port: int
    origin_port: int


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Hit benchmark: cachet proxy vs nginx")
    parser.add_argument("--sizes", default="1k", help="comma list of 1k,64k,1m (default 1k)")
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds (default 5)")
    parser.add_argument("--duration-s", type=int, default=10, help="seconds per wrk run")
    parser.add_argument("--warmup-s", type=int, default=2, help="discarded wrk run per server")
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--server-cpu", type=int, default=0)
    parser.add_argument("--wrk-cpu", type=int, default=1)
    parser.add_argument(
        "--pause-records",
        action="store_true",
        help="SIGSTOP the subject's records process for the run: measures what recording costs"
        " the serving process alone (records stay in the spool and are sealed after)",
    )
    parser.add_argument(
        "--records-cpu",
        type=int,
        default=None,
        help="move the subject's records process (sealer, forwarder) to this CPU; by default it"
        " inherits the server CPU, so recording is measured on one core",
    )
    parser.add_argument(
        "--records-idle",
        action="store_true",
        help="with --records-cpu: the records process at SCHED_IDLE, so on the wrk CPU it runs"
        " only in the time wrk leaves (a stand-in for a spare core on a 2-core box; it must still"
        " keep up: see batches forwarded)",
    )
    parser.add_argument(
        "--forward",
        action="store_true",
        help="give the subject a coordinator (its bench origin, on the wrk CPU, acknowledges"
        " every batch), so its records process also compresses and posts what it seals, as a"
        " deployed edge's does",
    )
    parser.add_argument("--base-port", type=int, default=18000, help="ports base..base+91")
    parser.add_argument(
        "--cachet-cmd",
        default=DEFAULT_CACHET_CMD,
        help="command for the system under test; placeholders {repo} {python} {listen} {port}"
        " {origin} {admin_listen} {cache_dir}; the word 'nginx' runs a second nginx (A/A run)",
    )
    parser.add_argument("--nginx-template", default=None, help="override the anchor template")
    parser.add_argument("--no-install", action="store_true", help="never run apt-get")
    parser.add_argument("--keep-run-dir", action="store_true", help="keep logs and caches")
    parser.add_argument("--results-dir", default=str(REPO_ROOT / "bench" / "results"))
    args = parser.parse_args(argv)
    unknown = [s for s in args.sizes.split(",") if s not in SIZE_PATHS]
    if unknown or args.rounds < 1 or args.duration_s < 1:
        parser.error(f"bad --sizes/--rounds/--duration-s (unknown sizes: {unknown})")
    return args


def bench_python() -> str:
    """The project's virtualenv Python (it has httptools and uvloop), else this one."""
    venv_python = REPO_ROOT / ".venv" / "bin" / "python"
    return str(venv_python) if venv_python.exists() else sys.executable


def subject_command(args: argparse.Namespace, target: Target, run_dir: Path) -> list[str]:
    """Expand --cachet-cmd for the subject's ports and cache folder."""
    values = {
        "repo": str(REPO_ROOT),
        "python": bench_python(),
        "listen": f"127.0.0.1:{target.port}",
        "port": str(target.port),
        "origin": f"http://127.0.0.1:{target.origin_port}",
        "admin_listen": f"127.0.0.1:{target.port + 10}",
        "cache_dir": str(run_dir / "cachet-cache"),
    }
    command = [part.format(**values) for part in shlex.split(args.cachet_cmd)]
    if getattr(args, "forward", False):
        command += ["--coordinator", values["origin"]]
    return command


def start_servers(
    args: argparse.Namespace, procs: ProcessGroup, run_dir: Path
) -> tuple[Target, Target]:
    """Start one bench origin per server, nginx and the subject; wait until all listen."""
    base = args.base_port
    anchor = Target(ANCHOR, base + 81, base + 1)
    subject = Target(SUBJECT, base + 80, base + 2)
    for port in (anchor.port, subject.port, anchor.origin_port, subject.origin_port):
        assert_port_free(port)
    origin_py = str(REPO_ROOT / "bench" / "origin.py")
    for target in (anchor, subject):
        # Origins share the wrk CPU: they are idle during measured rounds (all hits).
        cmd = [bench_python(), origin_py, "--listen", f"127.0.0.1:{target.origin_port}"]
        procs.start(f"origin-{target.name}", cmd, args.wrk_cpu, run_dir)
    template = find_template(args.nginx_template)
    conf = render_nginx_conf(template, run_dir / "nginx", anchor.origin_port, anchor.port)
    args.session_pids = {
        anchor.name: procs.start(anchor.name, nginx_command(conf), args.server_cpu, run_dir)
    }
    if args.cachet_cmd.strip() == "nginx":
        conf_b = render_nginx_conf(template, run_dir / "nginx-b", subject.origin_port, subject.port)
        subject_cmd = nginx_command(conf_b)
    else:
        subject_cmd = subject_command(args, subject, run_dir)
    args.session_pids[subject.name] = procs.start(
        subject.name, subject_cmd, args.server_cpu, run_dir
    )
    for target in (anchor, subject):
        procs.wait_listening(f"origin-{target.name}", target.origin_port, 15)
        procs.wait_listening(target.name, target.port, 30)
    return anchor, subject


def records_process_pid(run_dir: Path, timeout_s: float = 15.0) -> int | None:
    """The subject's records process (from its status file), or None when it has none."""
    status = run_dir / "cachet-cache" / "records" / "status.json"
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            return int(json.loads(status.read_bytes())["pid"])
        except (OSError, ValueError, KeyError):
            time.sleep(0.1)
    return None


def move_process(pid: int, cpu: int, idle: bool = False) -> None:
    """Pin every thread of ``pid`` to ``cpu`` (and with ``idle`` make each SCHED_IDLE):
    sched_setaffinity(pid) moves its main thread only, and the records process seals in a
    worker thread that already exists by now."""
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(ProcessLookupError):
            os.sched_setaffinity(int(task.name), {cpu})
            if idle:
                os.sched_setscheduler(int(task.name), os.SCHED_IDLE, os.sched_param(0))


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds a process has used (/proc/<pid>/stat)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def session_cpu_s(session: int) -> float:
    """User + system CPU seconds of every live process in a session (a server's master,
    workers and records process: each server was started in a session of its own)."""
    total = 0.0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(") ", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == session:
            total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def bench_size(
    args: argparse.Namespace, targets: tuple[Target, Target], size: str
) -> dict[str, Any]:
    """Warm, then run alternating rounds for one object size; return rounds and summary."""
    path = SIZE_PATHS[size]
    settings = WrkSettings(
        args.threads, args.connections, args.duration_s, args.wrk_cpu, args.server_cpu
    )
    origin: dict[str, dict[str, int]] = {t.name: {} for t in targets}
    for target in targets:
        before = read_origin_count(target.origin_port)
        tries = warm_until_hit(target.port, path)
        if args.warmup_s > 0:
            run_wrk(f"http://127.0.0.1:{target.port}{path}", settings, args.warmup_s)
        origin[target.name]["warm"] = read_origin_count(target.origin_port) - before
        origin[target.name]["warm_tries"] = tries
        origin[target.name]["before_rounds"] = read_origin_count(target.origin_port)
    records_pid = getattr(args, "records_pid", None)
    records_cpu_before = process_cpu_s(records_pid) if records_pid else 0.0
    sessions: dict[str, int] = getattr(args, "session_pids", {})
    session_cpu_before = {name: session_cpu_s(pid) for name, pid in sessions.items()}
    forward = getattr(args, "forward", False)
    subject = next(t for t in targets if t.name == SUBJECT)
    batches_before = read_batches_posted(subject.origin_port) if forward else 0
    rounds = [run_round(targets, path, settings, index) for index in range(args.rounds)]
    records: dict[str, Any] = {}
    requests = {t.name: sum(r[t.name]["requests_per_s"] for r in rounds) * args.duration_s
                for t in targets}  # fmt: skip
    records_cpu_s = 0.0
    if records_pid:
        records_cpu_s = process_cpu_s(records_pid) - records_cpu_before
        per_request_us = 1e6 * records_cpu_s / max(1.0, requests[SUBJECT])
        records = {"records_process_cpu_s": records_cpu_s,
                   "records_process_us_per_request": per_request_us}  # fmt: skip
    # CPU per request is steadier than requests/s on a shared machine: it does not care how
    # much of the core the scheduler gave the server, only what each answer cost.
    for name, pid in sessions.items():
        cpu_s = session_cpu_s(pid) - session_cpu_before[name]
        if name == SUBJECT:
            cpu_s -= records_cpu_s  # reported on its own line
        records[f"{name}_serving_us_per_request"] = 1e6 * cpu_s / max(1.0, requests[name])
    if forward:  # a forwarder that sent nothing measured nothing
        records["batches_forwarded"] = read_batches_posted(subject.origin_port) - batches_before
    for target in targets:
        after = read_origin_count(target.origin_port)
        origin[target.name]["rounds"] = after - origin[target.name].pop("before_rounds")
    return {"path": path, "rounds": rounds, "origin_requests": origin, **records,
            **summarize(rounds)}  # fmt: skip


def run_round(
    targets: tuple[Target, Target], path: str, settings: WrkSettings, index: int
) -> dict[str, Any]:
    """One round: both servers, in ABBA order so slow drift hits both sides equally."""
    order = targets if index % 2 == 0 else targets[::-1]
    results: dict[str, WrkResult] = {}
    for target in order:
        results[target.name] = run_wrk(f"http://127.0.0.1:{target.port}{path}", settings)
        print(
            f"  round {index + 1} {target.name:>6}: {results[target.name].requests_per_s:>10,.0f}"
            f" req/s  p99 {results[target.name].p99_ms:7.2f} ms"
            f"  busy: server CPU {results[target.name].cpu_busy['server_cpu']:.0%},"
            f" wrk CPU {results[target.name].cpu_busy['wrk_cpu']:.0%}",
            flush=True,
        )
    anchor, subject = results[ANCHOR], results[SUBJECT]
    return {
        "round": index + 1,
        "order": [t.name for t in order],
        **{name: result.to_json() for name, result in results.items()},
        "ratio_rps": subject.requests_per_s / anchor.requests_per_s,
    }


def summarize(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians per server and the two ratios: of medians, and median of per-round ratios."""
    summary: dict[str, Any] = {}
    for name in (ANCHOR, SUBJECT):
        summary[name] = {
            "median_rps": statistics.median(r[name]["requests_per_s"] for r in rounds),
            "median_p99_ms": statistics.median(r[name]["p99_ms"] for r in rounds),
            "non_2xx": sum(r[name]["non_2xx"] for r in rounds),
            "socket_errors": sum(r[name]["socket_errors"] for r in rounds),
        }
    ratios = [r["ratio_rps"] for r in rounds]
    summary["ratio_of_medians"] = summary[SUBJECT]["median_rps"] / summary[ANCHOR]["median_rps"]
    summary["median_round_ratio"] = statistics.median(ratios)
    summary["round_ratio_range"] = [min(ratios), max(ratios)]
    summary["p99_ratio"] = summary[SUBJECT]["median_p99_ms"] / summary[ANCHOR]["median_p99_ms"]
    return summary


def format_table(size: str, result: dict[str, Any], args: argparse.Namespace) -> str:
    """A human table for one size."""
    lines = [
        f"\n== {size} ({result['path']}): {args.rounds} rounds x {args.duration_s}s,"
        f" wrk -t{args.threads} -c{args.connections}, servers on CPU {args.server_cpu},"
        f" wrk on CPU {args.wrk_cpu}",
        f"{'server':<8}{'median req/s':>14}{'median p99 ms':>15}{'errors':>8}"
        f"{'origin reqs (warm-up / rounds)':>33}",
    ]
    for name in (ANCHOR, SUBJECT):
        s, o = result[name], result["origin_requests"][name]
        errors = s["non_2xx"] + s["socket_errors"]
        lines.append(
            f"{name:<8}{s['median_rps']:>14,.0f}{s['median_p99_ms']:>15.2f}{errors:>8}"
            f"{o['warm']:>25} / {o['rounds']}"
        )
    low, high = result["round_ratio_range"]
    lines.append(
        f"cachet/nginx req/s: {result['median_round_ratio']:.2f} (median of per-round ratios,"
        f" range {low:.2f}-{high:.2f}), {result['ratio_of_medians']:.2f} (ratio of medians);"
        f" p99 cachet/nginx: {result['p99_ratio']:.2f}"
    )
    if f"{SUBJECT}_serving_us_per_request" in result:
        anchor_us = result[f"{ANCHOR}_serving_us_per_request"]
        subject_us = result[f"{SUBJECT}_serving_us_per_request"]
        records_us = result.get("records_process_us_per_request", 0.0)
        lines.append(
            f"CPU per request: nginx {anchor_us:.2f} µs, cachet serving {subject_us:.2f} µs"
            + (f" + records process {records_us:.2f} µs" if records_us else "")
            + f"; nginx/cachet CPU: {anchor_us / max(1e-9, subject_us + records_us):.2f}"
        )
    if "records_process_us_per_request" in result:
        where = "its own CPU" if args.records_cpu is not None else "the server CPU"
        if args.pause_records:
            where = "paused: sealing deferred"
        forwarded = result.get("batches_forwarded")
        lines.append(
            f"cachet records process (on {where}): {result['records_process_cpu_s']:.1f} CPU s"
            f" in the rounds, {result['records_process_us_per_request']:.2f} µs per request"
            + ("" if forwarded is None else f"; {forwarded} batches forwarded")
        )
    return "\n".join(lines)


def write_results(args: argparse.Namespace, report: dict[str, Any]) -> Path:
    """Write the JSON report to the results folder; return its path."""
    out_dir = Path(args.results_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    out = out_dir / f"hits-{report['started'].replace(':', '')}.json"
    out.write_text(json.dumps(report, indent=2) + "\n")
    return out


def raise_timeout(signum: int, frame: FrameType | None) -> None:
    raise BenchError("the bench exceeded its time budget")


def raise_exit(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Install tools, start servers, bench each size, always stop what was started."""
    ensure_tools(allow_install=not args.no_install)
    sizes = args.sizes.split(",")
    per_size_s = 2 * (args.warmup_s + 2 + args.rounds * (args.duration_s + 2))
    signal.alarm(120 + 2 * per_size_s * len(sizes))  # bounded runtime, generous margin
    run_dir = Path(tempfile.mkdtemp(prefix="cachet-bench-"))
    run_dir.chmod(0o755)  # nginx's worker runs unprivileged and must reach its cache below
    procs = ProcessGroup(run_dir)
    report: dict[str, Any] = {
        "started": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "host": platform.node(),
        "loadavg_start": os.getloadavg(),
        "cachet_cmd": args.cachet_cmd,
        "settings": {
            k: v for k, v in vars(args).items() if k not in ("results_dir", "records_pid")
        },
        "sizes": {},
    }
    try:
        targets = start_servers(args, procs, run_dir)
        args.records_pid = None
        if args.cachet_cmd.strip() != "nginx":
            args.records_pid = records_process_pid(run_dir)
            if args.records_pid and args.records_cpu is not None:
                move_process(args.records_pid, args.records_cpu, args.records_idle)
            if args.records_pid and args.pause_records:
                os.kill(args.records_pid, signal.SIGSTOP)
        print(f"servers up (logs in {run_dir})", flush=True)
        for size in sizes:
            print(f"-- {size}", flush=True)
            report["sizes"][size] = bench_size(args, targets, size)
    finally:
        if getattr(args, "records_pid", None) and args.pause_records:
            with contextlib.suppress(ProcessLookupError):
                os.kill(args.records_pid, signal.SIGCONT)
        procs.stop_all()
        signal.alarm(0)
        if not args.keep_run_dir:
            cleanup_dir(run_dir)
    return report


def cleanup_dir(run_dir: Path) -> None:
    """Remove the temporary run folder (nginx cache, logs, the subject's cache folder)."""
    shutil.rmtree(run_dir, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    signal.signal(signal.SIGALRM, raise_timeout)
    signal.signal(signal.SIGTERM, raise_exit)
    started = time.monotonic()
    try:
        report = run(args)
    except (BenchError, WrkError) as exc:
        print(f"hits.py: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("hits.py: interrupted; all started processes stopped", file=sys.stderr)
        return 130
    report["elapsed_s"] = round(time.monotonic() - started, 1)
    report["loadavg_end"] = os.getloadavg()
    for size, result in report["sizes"].items():
        print(format_table(size, result, args))
    load = " ".join(f"{x:.1f}" for x in report["loadavg_end"])
    print(f"\nload average at the end: {load}; results: {write_results(args, report)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
