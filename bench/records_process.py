"""The records process end to end, alone on one core: seal + sign + forward, CPU per record.

Run (from the repo root): .venv/bin/python bench/records_process.py [--records N] [--rate R]
    [--batch N] [--rounds K] [--cpu C] [--load-cpu C] [--dir P] [--no-forward]

What recording costs an edge beyond its serving process is this process's CPU
(docs/design/spool.md): it reads the spool, checks every record, hashes, signs and fsyncs
batches, compresses them and POSTs them to the coordinator. `bench/hits.py --forward` measures
it under a wrk load, where its share moves with the scheduler and the other sessions on the
machine; here nothing else runs on its core. Per round:

1. a fresh records folder with an edge key, and `python -m proxy.records.daemon` (pinned to
   `--cpu`) forwarding to `bench/origin.py`, which acknowledges every `POST /v1/batches` (pinned,
   with this script, to `--load-cpu`);
2. once it is up (its status file), its CPU time is read; this script then appends `--records`
   hit records to the spool at `--rate` per second, as the serving process does (`RecordEncoder`
   hit templates over 100 objects, a flush every 16 records);
3. when the coordinator has acknowledged every record's batch, its CPU time is read again.

Reports CPU µs (user + system, all threads) per record of each round, and the median. Start-up
is outside the timed span; every poll, seal and POST of the steady state is inside. Also what
the appends cost this script, which writes as the serving process does: the appending thread's
CPU (formatting, framing, the stores and their page faults; in the proxy, the event loop's) and
the writer's helper thread's (the mapped writer's page-populating thread), per record.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from hits import process_cpu_s
from seal_spool import hit_templates
from services import BenchError

from cachet.keyfiles import write_private_key
from provenance.keys import generate_signing_key
from proxy.records.batch_files import DEFAULT_BATCH_MAX_RECORDS
from proxy.records.daemon import PipelineStatus, read_status, records_process_environment
from proxy.records.emit import RecordEncoder
from proxy.records.spool import hit_appender, open_spool

REPO_ROOT = Path(__file__).resolve().parents[1]

EDGE = "edge-bench"


@dataclass(frozen=True)
class WriterCost:
    """CPU seconds the writer spent on the records: on the appending thread (the serving
    process's event loop, in the proxy) and on the writer's helper threads (the mapped writer's
    page-populating thread)."""

    appending_s: float
    helpers_s: float


def helper_threads_cpu_s() -> float:
    """User + system CPU seconds of this process's threads other than the calling one."""
    me = str(threading.get_native_id())
    total = 0
    for task in Path("/proc/self/task").iterdir():
        if task.name == me:
            continue
        try:
            fields = (task / "stat").read_text().rsplit(") ", 1)[1].split()
        except OSError:  # a thread that ended meanwhile
            continue
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def write_hits(spool_dir: Path, count: int, rate: int) -> WriterCost:
    """Append ``count`` hit records at ``rate`` per second with the writer the proxy would use
    (open_spool: one frame per record, mapped; or with CACHET_SPOOL_MAPPED=0 a flush every 16
    records, as the write(2) writer's hit path does under load: one write per loop iteration).
    Returns what that cost this process (the sleeps between bursts are not CPU time)."""
    encoder = RecordEncoder(EDGE, "1")
    templates = hit_templates(encoder)
    writer = open_spool(spool_dir)
    append_hit = hit_appender(writer, encoder.encode_hit)
    helpers_before = helper_threads_cpu_s()
    appending_before = time.thread_time()
    started = time.monotonic()
    for i in range(count):
        append_hit(templates[i % 100], time.time(), f"r{i:x}")
        if i % 16 == 15:
            writer.flush()
            ahead_s = (i + 1) / rate - (time.monotonic() - started)
            if ahead_s > 0.002:
                time.sleep(ahead_s)
    cost = WriterCost(
        time.thread_time() - appending_before, helper_threads_cpu_s() - helpers_before
    )
    writer.close()
    return cost


def listening(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def done(status: PipelineStatus, args: argparse.Namespace, batches: int) -> bool:
    """Every record's batch acknowledged (or, with --no-forward, every record sealed)."""
    records: int = args.records
    if args.no_forward:
        return status.sealed_records >= records
    return status.acked >= batches


def one_round(args: argparse.Namespace, origin_port: int) -> tuple[float, WriterCost]:
    with tempfile.TemporaryDirectory(dir=args.dir) as folder:
        records_dir = Path(folder) / "records"
        key = generate_signing_key(EDGE, os.urandom(32))
        (records_dir / "keys").mkdir(parents=True)
        write_private_key(records_dir / "keys" / f"{EDGE}.key", key)
        command = [
            "taskset", "-c", str(args.cpu), sys.executable, "-m", "proxy.records.daemon",
            "--records-dir", str(records_dir), "--edge", EDGE,
            "--batch-max-records", str(args.batch),
            "--status-interval", "0.2",
        ]  # fmt: skip
        if not args.no_forward:
            command += ["--coordinator", f"http://127.0.0.1:{origin_port}"]
        daemon = subprocess.Popen(command, stdin=subprocess.PIPE, cwd=folder,
                                  env=records_process_environment(dict(os.environ)))  # fmt: skip
        try:
            deadline = time.monotonic() + 30
            while read_status(records_dir).pid == 0:  # no report yet
                if daemon.poll() is not None or time.monotonic() > deadline:
                    raise BenchError("the records process did not start")
                time.sleep(0.05)
            before = process_cpu_s(daemon.pid)
            writer = write_hits(records_dir / "spool", args.records, args.rate)
            batches = -(-args.records // args.batch)
            deadline = time.monotonic() + 60 + args.records / 10_000
            while not done(read_status(records_dir), args, batches):
                if daemon.poll() is not None or time.monotonic() > deadline:
                    raise BenchError("the records process did not forward every batch in time")
                time.sleep(0.05)
            cost: float = (process_cpu_s(daemon.pid) - before) / args.records
            return cost, writer
        finally:
            assert daemon.stdin is not None
            daemon.stdin.close()  # end of file on stdin: it seals what is left and exits
            try:
                daemon.wait(timeout=30)
            except subprocess.TimeoutExpired:
                daemon.kill()
                daemon.wait()


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, default=300_000)
    parser.add_argument("--rate", type=int, default=60_000, help="records appended per second")
    parser.add_argument("--batch", type=int, default=DEFAULT_BATCH_MAX_RECORDS)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--cpu", type=int, default=0, help="the records process's CPU")
    parser.add_argument("--load-cpu", type=int, default=1, help="this script and the origin")
    parser.add_argument("--port", type=int, default=18077)
    parser.add_argument("--dir", help="parent folder of the records folder (default: temp)")
    parser.add_argument(
        "--no-forward",
        action="store_true",
        help="no coordinator: seal and sign only (the difference is what forwarding costs)",
    )
    args = parser.parse_args()
    os.sched_setaffinity(0, {args.load_cpu})
    origin = subprocess.Popen(
        ["taskset", "-c", str(args.load_cpu), sys.executable, str(REPO_ROOT / "bench/origin.py"),
         "--listen", f"127.0.0.1:{args.port}"],
        stdout=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 15
        while not listening(args.port):
            if time.monotonic() > deadline:
                raise BenchError(f"bench/origin.py did not listen on {args.port}")
            time.sleep(0.05)
        costs, writers = [], []
        for index in range(args.rounds):
            cost, writer = one_round(args, args.port)
            costs.append(cost)
            writers.append(writer)
            print(
                f"  round {index + 1}: {cost * 1e6:.2f} µs CPU per record; the writer"
                f" {writer.appending_s * 1e6 / args.records:.2f} µs appending +"
                f" {writer.helpers_s * 1e6 / args.records:.2f} µs in its helper thread",
                flush=True,
            )
    except BenchError as exc:
        print(f"records_process.py: {exc}", file=sys.stderr)
        return 1
    finally:
        os.killpg(origin.pid, signal.SIGTERM)
        origin.wait()
    median = statistics.median(costs)
    print(
        f"records process (seal + sign + forward, {args.records:,} hit records at "
        f"{args.rate:,}/s, batches of {args.batch}) on CPU {args.cpu}: median "
        f"{median * 1e6:.2f} µs CPU per record ({1 / median:,.0f} records per CPU-second), "
        f"rounds {', '.join(f'{c * 1e6:.2f}' for c in costs)}"
    )
    appending = statistics.median(w.appending_s for w in writers) / args.records
    helpers = statistics.median(w.helpers_s for w in writers) / args.records
    print(
        f"the writer (what recording costs the serving process; on CPU {args.load_cpu}):"
        f" median {appending * 1e6:.2f} µs per record appending (format, frame, stores and"
        f" their page faults) + {helpers * 1e6:.2f} µs in its helper thread"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
