"""A trivial caching proxy standing in for `cachet proxy` while the bench is developed.

Not a cache anyone should run: it stores every GET 200 from the origin forever, keyed by path,
and answers later requests from memory with `X-Cache-Status: HIT`. It takes the same flags as
`cachet proxy` (extra ones are ignored), so bench/hits.py can run against it with
`--cachet-cmd "{python} {repo}/bench/placeholder_proxy.py --listen {listen} --origin {origin}"`.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
from typing import cast
from urllib.parse import urlsplit

import httptools

HOP_BY_HOP = {b"connection", b"keep-alive", b"transfer-encoding", b"x-cache-status"}


async def fetch_from_origin(host: str, port: int, path: str) -> tuple[int, bytes, bytes]:
    """Fetch `path` with HTTP/1.0 semantics; return (status, header block, body)."""
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(
        f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n\r\n".encode()
    )
    raw = await reader.read(-1)
    writer.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    status_line, _, header_block = head.partition(b"\r\n")
    kept = [
        line
        for line in header_block.split(b"\r\n")
        if line.split(b":", 1)[0].strip().lower() not in HOP_BY_HOP
    ]
    return int(status_line.split()[1]), b"\r\n".join(kept), body


def encode_response(status: int, header_block: bytes, body: bytes, cache_status: bytes) -> bytes:
    """Return wire bytes for a response carrying `X-Cache-Status: cache_status`."""
    return b"HTTP/1.1 %d X\r\n%s\r\nX-Cache-Status: %s\r\n\r\n%s" % (
        status,
        header_block,
        cache_status,
        body,
    )


class PlaceholderProtocol(asyncio.Protocol):
    """One client connection; hits are answered synchronously from the dict."""

    def __init__(self, cache: dict[str, bytes], origin: tuple[str, int]) -> None:
        self.cache = cache
        self.origin = origin
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.url = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            if self.transport is not None:
                self.transport.close()

    def on_message_begin(self) -> None:
        self.url = b""

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_message_complete(self) -> None:
        path = self.url.decode("latin-1")
        hit = self.cache.get(path)
        if hit is not None and self.transport is not None:
            self.transport.write(hit)
            return
        asyncio.get_running_loop().create_task(self.answer_miss(path))

    async def answer_miss(self, path: str) -> None:
        """Fetch from the origin, store a 200, answer MISS (no ordering for pipelined misses)."""
        status, header_block, body = await fetch_from_origin(*self.origin, path)
        if status == 200:
            self.cache[path] = encode_response(status, header_block, body, b"HIT")
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(encode_response(status, header_block, body, b"MISS"))


async def serve(listen: tuple[str, int], origin: tuple[str, int]) -> None:
    """Serve until SIGINT or SIGTERM."""
    loop = asyncio.get_running_loop()
    cache: dict[str, bytes] = {}
    server = await loop.create_server(
        lambda: PlaceholderProtocol(cache, origin), *listen, backlog=4096
    )
    stop = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    async with server:
        await stop.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description="Placeholder caching proxy for bench/hits.py")
    parser.add_argument("--listen", default="127.0.0.1:18080")
    parser.add_argument("--origin", default="http://127.0.0.1:18000")
    args, _ignored = parser.parse_known_args()
    host, _, port = args.listen.rpartition(":")
    origin = urlsplit(args.origin)
    target = (origin.hostname or "127.0.0.1", origin.port or 80)
    try:
        import uvloop
    except ImportError:
        asyncio.run(serve((host, int(port)), target))
    else:
        uvloop.run(serve((host, int(port)), target))


if __name__ == "__main__":
    main()
