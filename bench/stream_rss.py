"""Memory while one large object streams to many clients at once (issue 3: "streaming one 1 GiB
object to 20 concurrent clients grows the proxy's RSS by less than 100 MiB").

Run: .venv/bin/python bench/stream_rss.py [--size 1GiB] [--clients 20] [--slow 5]
     [--slow-rate 64MiB] [--framing length|chunked] [--waves 1] [--settle-disk] [--out FILE]
     [--proxy-flag=--memory=256MiB ...]

Starts a local origin (its own process) that serves a deterministic body of ``--size`` bytes
generated block by block (never held whole), with ``Cache-Control: max-age=300``, either with a
Content-Length or chunked. Starts ``cachet proxy`` (its own process, a fresh cache folder, default
settings plus ``--proxy-flag``s), warms it with a small request, and reads its VmRSS from
``/proc/<pid>/status`` as the baseline. Then ``--clients`` clients ask for the large object at
the same moment, ``--slow`` of them reading at ``--slow-rate`` bytes/s and the rest as fast as
they can; each checks the length and CRC-32 of what it got. ``--waves 2`` runs a second round
after the first, which shows hits on whatever the first left in the cache (with
``--settle-disk``, once the object is on the disk tier: a large one streams from there). RSS is
sampled every 20 ms until the last client is done. Prints a JSON summary: peak RSS growth over
the baseline (per wave; the top-level figure is the cold first wave's, the issue's number),
origin requests for the object, per-client results, durations; ``--out`` also writes it to a
file.

Exit status 0 when every client got the whole, correct body (whatever the numbers), 1 otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import random
import socket
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from dataclasses import asdict, dataclass
from multiprocessing.sharedctypes import Synchronized
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
BLOCK_BYTES = 1024 * 1024
OBJECT_PATH = "/large/object.bin"
WARM_PATH = "/warm"
SAMPLE_INTERVAL_S = 0.02
UNITS = {"": 1, "kib": 1024, "mib": 1024**2, "gib": 1024**3}


def parse_size(text: str) -> int:
    lowered = text.strip().lower()
    for unit in ("gib", "mib", "kib", ""):
        if lowered.endswith(unit) and lowered[: len(lowered) - len(unit)].isdigit():
            return int(lowered[: len(lowered) - len(unit)]) * UNITS[unit]
    raise argparse.ArgumentTypeError(f"not a size: {text!r} (e.g. 1GiB, 64MiB)")


# -- the body: deterministic, generated per block ------------------------------------------------

_BASE = random.Random(20261127).randbytes(BLOCK_BYTES)


def block(index: int, size: int) -> bytes:
    """Block ``index`` of a body of ``size`` bytes: a fixed random block stamped with its index,
    so a block served twice or out of order changes the CRC."""
    start = index * BLOCK_BYTES
    length = min(BLOCK_BYTES, size - start)
    return (index.to_bytes(8, "big") + _BASE[8:])[:length]


def expected_crc(size: int) -> int:
    crc = 0
    for index in range((size + BLOCK_BYTES - 1) // BLOCK_BYTES):
        crc = zlib.crc32(block(index, size), crc)
    return crc


# -- origin process ------------------------------------------------------------------------------


def run_origin(port: int, size: int, framing: str, hits: Synchronized[int]) -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                target = head.split(b" ", 2)[1].decode()
                if target == OBJECT_PATH:
                    with hits.get_lock():
                        hits.value += 1
                    await send_object(writer)
                else:
                    body = b"warm"
                    writer.write(
                        b"HTTP/1.1 200 OK\r\nCache-Control: max-age=300\r\n"
                        b"Content-Length: %d\r\n\r\n%b" % (len(body), body)
                    )
                    await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def send_object(writer: asyncio.StreamWriter) -> None:
        fields = (
            b"HTTP/1.1 200 OK\r\nCache-Control: max-age=300\r\n"
            b"Content-Type: application/octet-stream\r\n"
        )
        chunked = framing == "chunked"
        if chunked:
            writer.write(fields + b"Transfer-Encoding: chunked\r\n\r\n")
        else:
            writer.write(fields + b"Content-Length: %d\r\n\r\n" % size)
        for index in range((size + BLOCK_BYTES - 1) // BLOCK_BYTES):
            data = block(index, size)
            writer.write(b"%x\r\n%b\r\n" % (len(data), data) if chunked else data)
            await writer.drain()
        if chunked:
            writer.write(b"0\r\n\r\n")
        await writer.drain()

    async def main() -> None:
        server = await asyncio.start_server(handle, "127.0.0.1", port)
        async with server:
            await server.serve_forever()

    asyncio.run(main())


# -- the proxy and its memory --------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS line")


class RssSampler(threading.Thread):
    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.peak = 0
        self.samples = 0
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.is_set():
            try:
                self.peak = max(self.peak, rss_bytes(self.pid))
                self.samples += 1
            except (OSError, RuntimeError):
                return
            self._stop_event.wait(SAMPLE_INTERVAL_S)

    def stop(self) -> None:
        self._stop_event.set()
        self.join()


def wait_healthy(port: int, proc: subprocess.Popen[bytes], timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("cachet proxy exited during start-up")
        try:
            status, _body = get(port, "/healthz")
            if status == 200:
                return
        except OSError:
            pass
        time.sleep(0.05)
    raise RuntimeError("cachet proxy not healthy in time")


def get(port: int, target: str) -> tuple[int, bytes]:
    """A small GET with Connection: close (the warm-up and health checks)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(
            b"GET %b HTTP/1.1\r\nHost: bench.test\r\nConnection: close\r\n\r\n" % target.encode()
        )
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


# -- clients -------------------------------------------------------------------------------------


@dataclass
class ClientResult:
    index: int
    slow: bool
    status: int
    body_bytes: int
    crc_ok: bool
    seconds: float
    cache_status: str
    error: str | None = None


def client(
    index: int, port: int, slow_rate: int | None, start: threading.Event, size: int, crc: int
) -> ClientResult:
    start.wait()
    began = time.monotonic()
    status, received, body_crc, cache_status, error = 0, 0, 0, "", None
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=120) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 256 * 1024)
            sock.sendall(
                b"GET %b HTTP/1.1\r\nHost: bench.test\r\nConnection: close\r\n\r\n"
                % OBJECT_PATH.encode()
            )
            reader = sock.makefile("rb", buffering=256 * 1024)
            status = int(reader.readline().split(b" ", 2)[1])
            fields: dict[str, str] = {}
            while (line := reader.readline()) not in (b"\r\n", b""):
                name, _, value = line.decode("latin-1").partition(":")
                fields[name.strip().lower()] = value.strip()
            cache_status = fields.get("x-cache-status", "")
            chunked = "chunked" in fields.get("transfer-encoding", "")
            remaining = 0 if chunked else int(fields.get("content-length", "-1"))
            while True:
                if chunked and remaining == 0:
                    if received:
                        reader.readline()  # the CRLF after the previous chunk
                    remaining = int(reader.readline().split(b";")[0], 16)
                    if remaining == 0:
                        break
                elif not chunked and remaining <= 0:
                    break
                data = reader.read(min(remaining, 256 * 1024))
                if not data:
                    raise ConnectionError("closed before the body's end")
                body_crc = zlib.crc32(data, body_crc)
                received += len(data)
                remaining -= len(data)
                if slow_rate is not None:
                    lag = received / slow_rate - (time.monotonic() - began)
                    if lag > 0:
                        time.sleep(lag)
    except OSError as err:
        error = f"{type(err).__name__}: {err}"
    return ClientResult(
        index,
        slow_rate is not None,
        status,
        received,
        received == size and body_crc == crc,
        round(time.monotonic() - began, 2),
        cache_status,
        error,
    )


def wait_on_disk(admin_port: int, size: int, timeout_s: float = 300) -> float:
    """Seconds until the proxy's disk tier holds at least ``size`` bytes (the large object)."""
    began = time.monotonic()
    while time.monotonic() - began < timeout_s:
        _status, body = get(admin_port, "/metrics")
        for line in body.decode().splitlines():
            if line.startswith("cachet_disk_bytes ") and float(line.split()[1]) >= size:
                return round(time.monotonic() - began, 2)
        time.sleep(0.1)
    raise RuntimeError("the object never reached the disk tier")


# -- one wave of clients ------------------------------------------------------------------------


def run_wave(
    args: argparse.Namespace, pid: int, port: int, crc: int, baseline: int
) -> dict[str, Any]:
    """``--clients`` clients at once; the proxy's peak RSS while they read."""
    sampler = RssSampler(pid)
    sampler.start()
    start = threading.Event()
    results: list[ClientResult] = []
    threads = []
    for index in range(args.clients):
        rate = args.slow_rate if index < args.slow else None

        def run(i: int = index, r: int | None = rate) -> None:
            results.append(client(i, port, r, start, args.size, crc))

        threads.append(threading.Thread(target=run))
    for thread in threads:
        thread.start()
    began = time.monotonic()
    start.set()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - began
    sampler.stop()
    results.sort(key=lambda r: r.index)
    return {
        "peak_rss_mib": round(sampler.peak / 2**20, 1),
        "peak_growth_mib": round((sampler.peak - baseline) / 2**20, 1),
        "rss_samples": sampler.samples,
        "cache_status": sorted({r.cache_status for r in results}),
        "all_correct": all(r.crc_ok and r.status == 200 for r in results),
        "seconds": round(elapsed, 2),
        "clients_detail": [asdict(r) for r in results],
    }


# -- main ----------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=parse_size, default=parse_size("1GiB"))
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--slow", type=int, default=5, help="how many clients read slowly")
    parser.add_argument("--slow-rate", type=parse_size, default=parse_size("64MiB"))
    parser.add_argument("--framing", choices=("length", "chunked"), default="length")
    parser.add_argument("--proxy-flag", action="append", default=[], help="extra proxy flag")
    parser.add_argument(
        "--waves",
        type=int,
        default=1,
        help="rounds of clients, one after the other (2: the "
        "second sees whatever the first left in the cache)",
    )
    parser.add_argument(
        "--settle-disk",
        action="store_true",
        help="between waves, wait until the object is on the disk tier (cachet_disk_bytes "
        "reaches --size), so the next wave is served from the disk, not from the fill",
    )
    parser.add_argument("--out", type=Path, help="also write the JSON summary here")
    args = parser.parse_args()

    crc = expected_crc(args.size)
    hits: Synchronized[int] = multiprocessing.Value("q", 0)
    origin_port, proxy_port, admin_port = free_port(), free_port(), free_port()
    origin = multiprocessing.Process(
        target=run_origin, args=(origin_port, args.size, args.framing, hits), daemon=True
    )
    origin.start()
    with tempfile.TemporaryDirectory(prefix="cachet-stream-rss-") as run_dir:
        log_path = Path(run_dir) / "proxy.log"
        command = [
            sys.executable, "-m", "cachet", "proxy",
            "--listen", f"127.0.0.1:{proxy_port}",
            "--origin", f"http://127.0.0.1:{origin_port}",
            "--admin-listen", f"127.0.0.1:{admin_port}",
            "--cache-dir", str(Path(run_dir) / "cache"),
            *args.proxy_flag,
        ]  # fmt: skip
        env = {k: v for k, v in os.environ.items() if not k.startswith("CACHET_")}
        with log_path.open("wb") as log_file:
            proxy = subprocess.Popen(
                command, cwd=REPO_ROOT, stdout=log_file, stderr=log_file, env=env
            )
        try:
            wait_healthy(admin_port, proxy)
            for _ in range(3):
                get(proxy_port, WARM_PATH)
            time.sleep(0.5)
            baseline = rss_bytes(proxy.pid)
            waves = []
            for wave_index in range(args.waves):
                settled_s = None
                if wave_index and args.settle_disk:
                    settled_s = wait_on_disk(admin_port, args.size)
                before_requests = hits.value
                waves.append(run_wave(args, proxy.pid, proxy_port, crc, baseline))
                waves[-1]["origin_requests"] = hits.value - before_requests
                if settled_s is not None:
                    waves[-1]["waited_for_disk_s"] = settled_s
            after = rss_bytes(proxy.pid)
        finally:
            proxy.terminate()
            try:
                proxy.wait(30)
            except subprocess.TimeoutExpired:
                proxy.kill()
                proxy.wait()
            origin.terminate()
            origin.join(10)
        first = waves[0]
        summary = {
            "size_bytes": args.size,
            "framing": args.framing,
            "clients": args.clients,
            "slow_clients": args.slow,
            "slow_rate_bytes_per_s": args.slow_rate,
            "proxy_flags": args.proxy_flag,
            "baseline_rss_mib": round(baseline / 2**20, 1),
            "peak_growth_mib": first["peak_growth_mib"],  # the cold wave: the number
            "origin_requests": hits.value,
            "rss_after_mib": round(after / 2**20, 1),
            "all_correct": all(wave["all_correct"] for wave in waves),
            "waves": waves,
        }
    text = json.dumps(summary, indent=2)
    print(text)
    if args.out is not None:
        args.out.write_text(text + "\n")
    return 0 if summary["all_correct"] else 1


if __name__ == "__main__":
    sys.exit(main())
