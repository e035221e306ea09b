"""A burst of concurrent cold requests on one key: how many reach the origin (issue 3: "Origin
requests for a burst of 500 concurrent cold requests on one key (target: 1)").

Run: .venv/bin/python bench/cold_burst.py [--clients 500] [--rounds 5] [--delay-ms 50]
     [--path /obj-64k] [--no-install]

Starts nginx (the anchor config, with ``proxy_cache_lock on``) and ``cachet proxy``, each with its
own bench origin (bench/origin.py, answering every object request ``--delay-ms`` late, so the
misses overlap as they do in front of a real origin). Each round, first for one server then for
the other (alternating which goes first), opens ``--clients`` connections, then writes one GET
of a key nobody asked before (``<path>?burst=<round>``) on all of them at once and reads every
answer. Reports per server and round: origin requests for that key, answers by status, whether
every body was whole, and the p50/p99/max time to the last byte. Exit status 0 when every client
got a whole 200 (whatever the counts), 1 otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import shutil
import signal
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from services import (
    REPO_ROOT,
    BenchError,
    ProcessGroup,
    assert_port_free,
    ensure_tools,
    find_template,
    nginx_command,
    read_origin_counts,
    render_nginx_conf,
)

CACHET_CMD = (
    "{repo}/.venv/bin/cachet proxy --listen 127.0.0.1:{port} --origin http://127.0.0.1:{origin}"
    " --admin-listen 127.0.0.1:{admin} --cache-dir {cache_dir}"
)
READ_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class Server:
    name: str
    port: int
    origin_port: int


@dataclass(frozen=True)
class Answer:
    status: int
    whole: bool
    seconds: float


def bench_python() -> str:
    venv_python = REPO_ROOT / ".venv" / "bin" / "python"
    return str(venv_python) if venv_python.exists() else sys.executable


async def one_client(
    port: int, request: bytes, go: asyncio.Event, opened: list[int], started: list[float]
) -> Answer:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    opened.append(1)
    try:
        await go.wait()
        writer.write(request)
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), READ_TIMEOUT_S)
        status = int(head.split(b" ", 2)[1])
        length = None
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value.strip())
        if length is None:  # the bench origin always sends a length; treat others as torn
            return Answer(status, False, time.perf_counter() - started[0])
        body = await asyncio.wait_for(reader.readexactly(length), READ_TIMEOUT_S)
        return Answer(status, len(body) == length, time.perf_counter() - started[0])
    except (TimeoutError, OSError, asyncio.IncompleteReadError, ValueError):
        return Answer(0, False, time.perf_counter() - started[0])
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


async def burst(port: int, target: str, clients: int) -> list[Answer]:
    """Open ``clients`` connections, then send one GET on every one of them at once."""
    request = f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode()
    go = asyncio.Event()
    opened: list[int] = []
    started = [0.0]
    tasks = [
        asyncio.create_task(one_client(port, request, go, opened, started)) for _ in range(clients)
    ]
    deadline = time.monotonic() + 30
    while len(opened) < clients and time.monotonic() < deadline:
        if all(task.done() for task in tasks):
            break
        await asyncio.sleep(0.01)
    started[0] = time.perf_counter()
    go.set()
    return list(await asyncio.gather(*tasks))


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def run_round(server: Server, path: str, round_index: int, clients: int) -> dict[str, Any]:
    before = read_origin_counts(server.origin_port).get(path, 0)
    answers = asyncio.run(burst(server.port, f"{path}?burst={round_index}", clients))
    time.sleep(0.2)  # a fill's origin request is counted when it arrives, already done here
    origin_requests = read_origin_counts(server.origin_port).get(path, 0) - before
    statuses: dict[str, int] = {}
    for answer in answers:
        statuses[str(answer.status)] = statuses.get(str(answer.status), 0) + 1
    times_ms = [a.seconds * 1000 for a in answers]
    return {
        "origin_requests": origin_requests,
        "statuses": statuses,
        "all_whole_200": all(a.status == 200 and a.whole for a in answers),
        "p50_ms": round(statistics.median(times_ms), 1),
        "p99_ms": round(percentile(times_ms, 0.99), 1),
        "max_ms": round(max(times_ms), 1),
    }


def start(args: argparse.Namespace, procs: ProcessGroup, run_dir: Path) -> list[Server]:
    base = args.base_port
    nginx = Server("nginx", base + 81, base + 1)
    cachet = Server("cachet", base + 80, base + 2)
    for port in (nginx.port, cachet.port, nginx.origin_port, cachet.origin_port, base + 90):
        assert_port_free(port)
    for server in (nginx, cachet):
        origin = [
            bench_python(),
            str(REPO_ROOT / "bench" / "origin.py"),
            "--listen",
            f"127.0.0.1:{server.origin_port}",
            "--delay-ms",
            str(args.delay_ms),
        ]
        procs.start(f"origin-{server.name}", origin, args.client_cpu, run_dir)
    conf = render_nginx_conf(
        find_template(args.nginx_template), run_dir / "nginx", nginx.origin_port, nginx.port
    )
    procs.start("nginx", nginx_command(conf), args.server_cpu, run_dir)
    values = {
        "repo": REPO_ROOT,
        "port": cachet.port,
        "origin": cachet.origin_port,
        "admin": base + 90,
        "cache_dir": run_dir / "cachet-cache",
    }
    procs.start("cachet", CACHET_CMD.format(**values).split(), args.server_cpu, REPO_ROOT)
    for server in (nginx, cachet):
        procs.wait_listening(f"origin-{server.name}", server.origin_port, 15)
        procs.wait_listening(server.name, server.port, 30)
    return [nginx, cachet]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Concurrent cold misses: nginx vs cachet")
    parser.add_argument("--clients", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--delay-ms", type=float, default=50.0, help="origin answer delay")
    parser.add_argument("--path", default="/obj-64k", choices=["/obj-1k", "/obj-64k", "/obj-1m"])
    parser.add_argument("--server-cpu", type=int, default=0)
    parser.add_argument("--client-cpu", type=int, default=1)
    parser.add_argument("--base-port", type=int, default=18200)
    parser.add_argument("--nginx-template", default=None)
    parser.add_argument("--no-install", action="store_true", help="never run apt-get")
    args = parser.parse_args(argv)
    if args.clients < 1 or args.rounds < 1:
        parser.error("--clients and --rounds must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    ensure_tools(allow_install=not args.no_install)
    with contextlib.suppress(OSError):  # 500 sockets each side
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 8192)), hard))
    signal.alarm(60 + args.rounds * 2 * 90)
    run_dir = Path(tempfile.mkdtemp(prefix="cachet-burst-"))
    run_dir.chmod(0o755)  # nginx's worker runs unprivileged and must reach its cache
    procs = ProcessGroup(run_dir)
    report: dict[str, Any] = {"settings": vars(args), "rounds": []}
    try:
        servers = start(args, procs, run_dir)
        for index in range(args.rounds):
            order = servers if index % 2 == 0 else servers[::-1]
            row = {s.name: run_round(s, args.path, index, args.clients) for s in order}
            report["rounds"].append(row)
            print(json.dumps({"round": index, **row}), flush=True)
    except BenchError as err:
        print(f"bench failed: {err}", file=sys.stderr)
        return 1
    finally:
        procs.stop_all()
        signal.alarm(0)
        shutil.rmtree(run_dir, ignore_errors=True)
    ok = all(row[name]["all_whole_200"] for row in report["rounds"] for name in row)
    summary = {
        name: {
            "origin_requests_per_round": [row[name]["origin_requests"] for row in report["rounds"]],
            "p99_ms_per_round": [row[name]["p99_ms"] for row in report["rounds"]],
        }
        for name in ("nginx", "cachet")
    }
    print(json.dumps({"summary": summary, "all_whole_200": ok}, indent=1))
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
