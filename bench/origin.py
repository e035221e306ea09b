"""A tiny, fast origin for the hit benchmark (bench only, not part of the product).

Serves `/obj-1k`, `/obj-64k` and `/obj-1m`: deterministic bytes, `Cache-Control: max-age=86400`,
a strong ETag and a fixed Last-Modified, so any shared cache stores them for a day. Answers
`If-None-Match` with 304. `/__count` returns, as JSON, how many requests it served per path
(excluding `/__count` itself), so the bench can report how many origin fetches each cache made.
`POST /v1/batches` answers 200 `{"status": "stored"}` whatever the body: a coordinator that
acknowledges every batch, for `bench/hits.py --forward` (an edge's forwarder, compressing and
posting its batches, is part of what recording costs the edge).

A raw asyncio Protocol with the httptools parser (uvloop when available): the origin must never be
the bottleneck while a cache is being warmed.

    python bench/origin.py --listen 127.0.0.1:18000
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import signal
from collections import Counter
from typing import cast

import httptools

OBJECT_SIZES_BYTES: dict[str, int] = {
    "/obj-1k": 1024,
    "/obj-64k": 64 * 1024,
    "/obj-1m": 1024 * 1024,
}
LAST_MODIFIED = "Mon, 01 Jan 2024 00:00:00 GMT"
COUNT_PATH = "/__count"
BATCHES_PATH = "/v1/batches"
STORED = b'{"status": "stored"}'


def make_body(size_bytes: int) -> bytes:
    """Return `size_bytes` deterministic bytes: a repeated SHA-256 chain seeded by the size."""
    block = hashlib.sha256(f"cachet-bench-{size_bytes}".encode()).digest()
    blocks = [block]
    while len(blocks) * len(block) < size_bytes:
        block = hashlib.sha256(block).digest()
        blocks.append(block)
    return b"".join(blocks)[:size_bytes]


def make_etag(body: bytes) -> str:
    """Return a strong ETag for `body`."""
    return '"' + hashlib.sha256(body).hexdigest()[:32] + '"'


class ObjectResponses:
    """Precomputed wire bytes for every object: 200 head + body and the 304 answer."""

    def __init__(self) -> None:
        self.heads_200: dict[str, bytes] = {}
        self.bodies: dict[str, bytes] = {}
        self.etags: dict[str, str] = {}
        self.responses_304: dict[str, bytes] = {}
        for path, size_bytes in OBJECT_SIZES_BYTES.items():
            body = make_body(size_bytes)
            etag = make_etag(body)
            common = (
                f"Cache-Control: max-age=86400\r\nETag: {etag}\r\n"
                f"Last-Modified: {LAST_MODIFIED}\r\n"
            )
            self.bodies[path] = body
            self.etags[path] = etag
            self.heads_200[path] = (
                f"HTTP/1.1 200 OK\r\n{common}Content-Type: application/octet-stream\r\n"
                f"Content-Length: {size_bytes}\r\n\r\n"
            ).encode()
            self.responses_304[path] = f"HTTP/1.1 304 Not Modified\r\n{common}\r\n".encode()


def encode_simple(status: str, body: bytes, content_type: str) -> bytes:
    """Return a complete uncacheable response with `body`."""
    head = (
        f"HTTP/1.1 {status}\r\nCache-Control: no-store\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


class OriginProtocol(asyncio.Protocol):
    """One client connection: parse requests with httptools, answer from precomputed bytes."""

    def __init__(
        self, responses: ObjectResponses, counts: Counter[str], delay_s: float = 0.0
    ) -> None:
        self.responses = responses
        self.counts = counts
        self.delay_s = delay_s
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.url = b""
        self.if_none_match = b""
        self.header_name = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            if self.transport is not None:
                self.transport.write(
                    encode_simple("400 Bad Request", b"bad request\n", "text/plain")
                )
                self.transport.close()

    def on_message_begin(self) -> None:
        self.url = b""
        self.if_none_match = b""

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        if name.lower() == b"if-none-match":
            self.if_none_match = value

    def on_message_complete(self) -> None:
        if self.transport is None:
            return
        path = httptools.parse_url(self.url).path.decode("latin-1")
        method = self.parser.get_method()
        answer = self.answer(path, method)
        keep_alive = self.parser.should_keep_alive()
        if self.delay_s > 0 and path != COUNT_PATH:
            # A slow origin widens the window in which a cache must collapse concurrent misses.
            asyncio.get_running_loop().call_later(self.delay_s, self.send, answer, keep_alive)
        else:
            self.send(answer, keep_alive)

    def send(self, answer: bytes, keep_alive: bool) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        self.transport.write(answer)
        if not keep_alive:
            self.transport.close()

    def answer(self, path: str, method: bytes) -> bytes:
        """Return the wire bytes answering `method path`, counting origin requests."""
        if path == COUNT_PATH:
            payload = {"total": sum(self.counts.values()), "paths": dict(self.counts)}
            return encode_simple("200 OK", json.dumps(payload).encode(), "application/json")
        self.counts[path] += 1
        if path == BATCHES_PATH and method == b"POST":
            return encode_simple("200 OK", STORED, "application/json")
        head = self.responses.heads_200.get(path)
        if head is None:
            return encode_simple("404 Not Found", b"not found\n", "text/plain")
        if self.if_none_match and self.responses.etags[path].encode() in self.if_none_match:
            return self.responses.responses_304[path]
        if method == b"HEAD":
            return head
        return head + self.responses.bodies[path]


async def serve(host: str, port: int, delay_s: float = 0.0) -> None:
    """Serve until SIGINT or SIGTERM."""
    loop = asyncio.get_running_loop()
    responses = ObjectResponses()
    counts: Counter[str] = Counter()
    server = await loop.create_server(
        lambda: OriginProtocol(responses, counts, delay_s), host, port, backlog=4096
    )
    stop = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    async with server:
        await stop.wait()


def parse_listen(value: str) -> tuple[str, int]:
    """Split `HOST:PORT`."""
    host, _, port = value.rpartition(":")
    return host or "127.0.0.1", int(port)


def main() -> None:
    parser = argparse.ArgumentParser(description="Fast deterministic origin for bench/hits.py")
    parser.add_argument("--listen", default="127.0.0.1:18000", help="HOST:PORT")
    parser.add_argument(
        "--delay-ms", type=float, default=0.0, help="answer every object request this late"
    )
    args = parser.parse_args()
    host, port = parse_listen(args.listen)
    delay_s = max(0.0, args.delay_ms / 1000)
    try:
        import uvloop
    except ImportError:
        asyncio.run(serve(host, port, delay_s))
    else:
        uvloop.run(serve(host, port, delay_s))


if __name__ == "__main__":
    main()
