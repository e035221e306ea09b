"""Time the proxy's hit path in-process (parse, look up, decide, write) with a fake transport.

CPU-only and single-threaded, so it is steadier than a socket benchmark on a noisy machine; it
tells where the microseconds of a hit go.
Usage: .venv/bin/python bench/hit_path_micro.py [--profile]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import tempfile
import time

from prometheus_client import CollectorRegistry

from proxy.cache.admission import make_stored_response
from proxy.config import OriginConfig, ProxyConfig
from proxy.connection import ClientConnection
from proxy.server import build_state

REQUEST = b"GET /obj-1k HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n"


class FakeTransport:
    def __init__(self) -> None:
        self.written = 0

    def write(self, data: bytes) -> None:
        self.written += len(data)

    def writelines(self, parts: tuple[bytes, ...]) -> None:
        self.written += sum(len(part) for part in parts)

    def get_extra_info(self, name: str) -> object:
        return ("127.0.0.1", 40000) if name == "peername" else None

    def close(self) -> None:
        pass

    def abort(self) -> None:
        pass

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


async def main(count: int, profile: bool, records: bool) -> None:
    with tempfile.TemporaryDirectory() as cache_dir:
        await _run(count, profile, records, cache_dir)


async def _run(count: int, profile: bool, records: bool, cache_dir: str) -> None:
    config = ProxyConfig(
        origins=(OriginConfig(url="http://127.0.0.1:8000"),), records=records, cache_dir=cache_dir
    )
    state, _origin = build_state(config, CollectorRegistry())
    cork = state.cork
    now = time.time()
    stored = make_stored_response(
        200,
        "OK",
        [
            ("Content-Type", "application/octet-stream"),
            ("Cache-Control", "max-age=86400"),
            ("ETag", '"abc"'),
            ("Date", "Fri, 27 Nov 2026 03:00:00 GMT"),
        ],
        b"x" * 1024,
        [("Host", "127.0.0.1:8080")],
        now,
        now,
        state.handler.settings.admission,
    )
    state.handler.store.put("http://127.0.0.1:8080/obj-1k", stored)
    conn = ClientConnection(state)
    transport = FakeTransport()
    conn.connection_made(transport)  # type: ignore[arg-type]
    # A busy loop serves several connections per iteration; release the cork every 16 hits.
    for i in range(1000):
        conn.data_received(REQUEST)
        if cork is not None and i % 16 == 15:
            cork.release()
    profiler = cProfile.Profile() if profile else None
    if profiler:
        profiler.enable()
    started = time.perf_counter()
    for i in range(count):
        conn.data_received(REQUEST)
        if cork is not None and i % 16 == 15:
            cork.release()
    if cork is not None:
        cork.release()
    elapsed = time.perf_counter() - started
    if profiler:
        profiler.disable()
        pstats.Stats(profiler).sort_stats("tottime").print_stats(18)
    print(f"{elapsed / count * 1e6:.2f} µs per hit ({count / elapsed:,.0f} hits/s on one core)")
    assert transport.written > count * 1024


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=100_000)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--records", action="store_true", help="record every hit to a spool")
    args = parser.parse_args()
    asyncio.run(main(args.count, args.profile, args.records))
