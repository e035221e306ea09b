"""Hits on bodies larger than SEPARATE_BODY_BYTES: the head and the stored body go to the socket
as two writes (no per-client copy of the body), which must change nothing a client sees: the
same bytes, framing, keep-alive and pipelining order (RFC 9112 §9.3.2), and the record of the
hit is in the spool before the response completes."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from proxy.handler import SEPARATE_BODY_BYTES
from tests.integration.conftest import Origin, Proxy, start_proxy

pytestmark = pytest.mark.integration
SIZE = SEPARATE_BODY_BYTES * 5 + 17
FRESH = ["Cache-Control", "max-age=600"]


def read_response(sock: socket.socket, buffer: bytearray) -> tuple[bytes, bytes]:
    """One response (head, body) with a Content-Length, from ``buffer`` + the socket."""
    while b"\r\n\r\n" not in buffer:
        buffer += sock.recv(65536)
    head, _, rest = bytes(buffer).partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    buffer[:] = rest
    while len(buffer) < length:
        buffer += sock.recv(1 << 20)
    body = bytes(buffer[:length])
    del buffer[:length]
    return head, body


@pytest.fixture
def proxy(origin: Origin, tmp_path: Path) -> Iterator[Proxy]:
    server = start_proxy(origin.url, tmp_path)
    yield server
    server.stop()


def test_a_large_hit_is_whole_and_pipelined_answers_keep_their_order(
    origin: Origin, proxy: Proxy
) -> None:
    origin.script("/large-hit", {"headers": [FRESH], "body_size": SIZE})
    origin.script("/small-after", {"headers": [FRESH], "body": "small"})
    assert proxy.get("/large-hit").status == 200  # miss: now cached
    assert proxy.get("/small-after").status == 200
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as sock:
        host = b"127.0.0.1:%d" % proxy.port  # the cache key's host, as http.client sends it
        requests = b"".join(
            b"GET %s HTTP/1.1\r\nHost: %s\r\n\r\n" % (path, host)
            for path in (b"/large-hit", b"/small-after", b"/large-hit")
        )
        sock.sendall(requests)
        buffer = bytearray()
        answers = [read_response(sock, buffer) for _ in range(3)]
    bodies = [body for _, body in answers]
    assert bodies == [b"x" * SIZE, b"small", b"x" * SIZE]
    assert [b"X-Cache-Status: HIT" in head for head, _ in answers] == [True] * 3, answers[0][0]


def test_the_record_of_a_large_hit_counts_the_bytes_sent(origin: Origin, proxy: Proxy) -> None:
    origin.script("/large-recorded", {"headers": [FRESH], "body_size": SIZE})
    proxy.get("/large-recorded")
    hit = proxy.get("/large-recorded")
    assert hit.status == 200 and len(hit.body) == SIZE
    request_id = hit.header("X-Request-ID")
    deadline = time.monotonic() + 10
    while (answer := proxy.admin(f"/_cachet/receipts/{request_id}")).status != 200:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert b'"bytes": %d' % SIZE in answer.body or b'"bytes":%d' % SIZE in answer.body
    assert b'"cache": "hit"' in answer.body or b'"cache":"hit"' in answer.body
