"""A Range request that joins a fill too large to wait for whole (over range_fill_max_size) gets
its range, not the whole 200: evaluated against the fill's head as against a stored response
(RFC 9110 §14.2, §13.1.5), one range that starts at or near what has arrived streams from the
fill as a 206 (§14.4, §15.3.7), one further ahead than RANGE_JOIN_AHEAD_BYTES is asked of the
origin with its Range (a seek never waits for the fill to get there), nothing satisfiable is a
416 (§15.5.17). Several ranges or an ignored Range still get the whole 200 from the fill.

The origin here holds each object's body after a prefix until the test opens its gate, so the
fill is still running when the range joins it: no timing decides what is tested."""

from __future__ import annotations

import contextlib
import socket
import socketserver
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from email.utils import formatdate

import pytest

from proxy.fetch import RANGE_JOIN_AHEAD_BYTES
from tests.integration.conftest import Proxy, read_until_close, start_proxy
from tests.integration.origin_app import stamped_body
from tests.integration.test_large_disk import record_of, split

KiB = 1024
MiB = 1024 * KiB
SIZE = 4 * MiB + 321  # over the range fill limit below, within the ahead window
PREFIX = 1 * MiB  # what the origin sends before it waits for the gate
FAR_SIZE = PREFIX + RANGE_JOIN_AHEAD_BYTES + 4 * MiB  # a range near its end is beyond reach
ETAG = '"fill-v1"'
# Long before the Date the origin sends (now): a strong validator (RFC 9110 §8.8.2.2).
LAST_MODIFIED = "Mon, 02 Mar 2026 10:00:00 GMT"
HOST = "join.test"
FLAGS = (
    "--memory", "8MiB", "--max-object-size", "1MiB", "--range-fill-max-size", "64KiB",
    "--records",
)  # fmt: skip
GATE_WAIT_S = 60.0


@dataclass
class _Object:
    body: bytes
    gate: threading.Event = field(default_factory=threading.Event)
    reset_at_gate: bool = False  # the origin drops the connection instead of the rest
    requests: list[dict[str, str]] = field(default_factory=list)


class GatedOrigin:
    """An origin on 127.0.0.1 that answers a GET without Range with a 200 of known length whose
    body stops after PREFIX bytes until the object's gate opens, and a single-range GET at once
    with a 206 (as an origin answering a seek)."""

    def __init__(self) -> None:
        self.objects: dict[str, _Object] = {}
        origin = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                origin.answer(self.request)

        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def add(self, path: str, size: int, *, reset_at_gate: bool = False) -> _Object:
        obj = _Object(stamped_body(size), reset_at_gate=reset_at_gate)
        self.objects[path] = obj
        return obj

    def close(self) -> None:
        for obj in self.objects.values():
            obj.gate.set()
        self.server.shutdown()
        self.server.server_close()

    def answer(self, sock: socket.socket) -> None:
        data = b""
        while b"\r\n\r\n" not in data:
            piece = sock.recv(65536)
            if not piece:
                return
            data += piece
        lines = data.split(b"\r\n\r\n")[0].decode("latin-1").split("\r\n")
        path = lines[0].split(" ")[1].split("?")[0]
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        obj = self.objects[path]
        obj.requests.append(headers)
        body = obj.body
        fields = (
            f"ETag: {ETAG}\r\nLast-Modified: {LAST_MODIFIED}\r\n"
            f"Date: {formatdate(usegmt=True)}\r\n"
            "Cache-Control: max-age=300\r\nContent-Type: video/mp4\r\nConnection: close\r\n"
        )
        if "range" in headers:
            first_text, _, last_text = headers["range"].removeprefix("bytes=").partition("-")
            first, last = int(first_text), min(int(last_text), len(body) - 1)
            part = body[first : last + 1]
            sock.sendall(
                (
                    f"HTTP/1.1 206 Partial Content\r\n{fields}"
                    f"Content-Range: bytes {first}-{last}/{len(body)}\r\n"
                    f"Content-Length: {len(part)}\r\n\r\n"
                ).encode()
                + part
            )
            return
        head = f"HTTP/1.1 200 OK\r\n{fields}Content-Length: {len(body)}\r\n\r\n"
        sock.sendall(head.encode() + body[:PREFIX])
        obj.gate.wait(GATE_WAIT_S)
        if obj.reset_at_gate:
            sock.setsockopt(
                socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00"
            )
            return
        sock.sendall(body[PREFIX:])


@pytest.fixture(scope="module")
def gated() -> Iterator[GatedOrigin]:
    origin = GatedOrigin()
    yield origin
    origin.close()


@pytest.fixture(scope="module")
def proxy(gated: GatedOrigin, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proxy]:
    started = start_proxy(gated.url, tmp_path_factory.mktemp("range-join"), *FLAGS)
    yield started
    started.stop()


@pytest.fixture
def pool() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(max_workers=2) as executor:
        yield executor


def request(path: str, extra: str = "") -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n{extra}\r\n".encode()


def get_raw(proxy: Proxy, path: str, extra: str = "") -> bytes:
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=GATE_WAIT_S) as sock:
        sock.sendall(request(path, extra))
        return read_until_close(sock, GATE_WAIT_S)


@contextlib.contextmanager
def opened(proxy: Proxy, path: str, extra: str = "") -> Iterator[socket.socket]:
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=GATE_WAIT_S) as sock:
        sock.sendall(request(path, extra))
        yield sock


def read_head(sock: socket.socket) -> tuple[bytes, bytes]:
    """The response head (written before the body is there), and what came after it."""
    data = b""
    while b"\r\n\r\n" not in data:
        piece = sock.recv(65536)
        assert piece, f"closed before the head: {data!r}"
        data += piece
    head, _, rest = data.partition(b"\r\n\r\n")
    return head + b"\r\n\r\n", rest


def lead_fill(
    proxy: Proxy,
    gated: GatedOrigin,
    pool: ThreadPoolExecutor,
    path: str,
    size: int,
    *,
    reset_at_gate: bool = False,
) -> tuple[_Object, Future[bytes]]:
    """A plain GET that leads the fill; returned once the origin has its request (the fill is
    registered before the proxy asks the origin, so later requests join it)."""
    obj = gated.add(path, size, reset_at_gate=reset_at_gate)
    leader = pool.submit(get_raw, proxy, path)
    deadline = time.monotonic() + GATE_WAIT_S
    while not obj.requests and not leader.done() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert obj.requests, "the origin never saw the leader's request"
    return obj, leader


def range_of(request_headers: dict[str, str]) -> str | None:
    return request_headers.get("range")


@pytest.mark.parametrize(
    "if_range",
    ["", f"If-Range: {ETAG}\r\n", f"If-Range: {LAST_MODIFIED}\r\n"],
    ids=["no-if-range", "if-range-etag", "if-range-date"],
)
def test_a_range_already_received_is_a_206_from_the_fill_rfc9110_s14_4(
    proxy: Proxy, gated: GatedOrigin, pool: ThreadPoolExecutor, path: str, if_range: str
) -> None:
    obj, leader = lead_fill(proxy, gated, pool, path, SIZE)
    # Answered while the origin still holds the rest of the body: from what the fill has.
    status, fields, got = split(get_raw(proxy, path, f"Range: bytes=0-99\r\n{if_range}"))
    assert status == 206  # RFC 9110 §15.3.7
    assert fields["content-range"] == f"bytes 0-99/{SIZE}"  # §14.4
    assert fields["content-length"] == "100"
    assert got == obj.body[:100]
    assert "collapsed" in fields["cache-status"]
    assert fields["etag"] == ETAG
    assert fields["via"].endswith("cachet")
    record = record_of(proxy, fields)
    assert (record["status"], record["bytes"]) == (206, 100)
    obj.gate.set()
    assert split(leader.result())[2] == obj.body
    assert [range_of(r) for r in obj.requests] == [None]  # the fill's request alone


def test_a_suffix_range_within_reach_waits_for_the_fill_rfc9110_s14_1_2(
    proxy: Proxy, gated: GatedOrigin, pool: ThreadPoolExecutor, path: str
) -> None:
    obj, leader = lead_fill(proxy, gated, pool, path, SIZE)
    with opened(proxy, path, "Range: bytes=-100\r\n") as sock:
        # The 206's head comes at once; its bytes once the fill has them.
        head, rest = read_head(sock)
        status, fields, _ = split(head)
        assert status == 206
        assert fields["content-range"] == f"bytes {SIZE - 100}-{SIZE - 1}/{SIZE}"
        assert fields["content-length"] == "100"
        assert "collapsed" in fields["cache-status"]
        obj.gate.set()
        got = rest + read_until_close(sock, GATE_WAIT_S)
    assert got == obj.body[-100:]
    assert split(leader.result())[2] == obj.body
    assert [range_of(r) for r in obj.requests] == [None]
    record = record_of(proxy, fields)
    assert (record["status"], record["bytes"]) == (206, 100)


def test_a_range_beyond_reach_goes_to_the_origin_rfc9110_s14_2(
    proxy: Proxy, gated: GatedOrigin, pool: ThreadPoolExecutor, path: str
) -> None:
    obj, leader = lead_fill(proxy, gated, pool, path, FAR_SIZE)
    first = FAR_SIZE - MiB
    wanted = f"bytes={first}-{first + 99}"
    # Answered while the fill is held at PREFIX: it never waited for the fill to get there.
    status, fields, got = split(get_raw(proxy, path, f"Range: {wanted}\r\n"))
    assert status == 206
    assert fields["content-range"] == f"bytes {first}-{first + 99}/{FAR_SIZE}"
    assert got == obj.body[first : first + 100]
    assert "collapsed" not in fields["cache-status"]
    assert [range_of(r) for r in obj.requests] == [None, wanted]
    obj.gate.set()
    assert split(leader.result())[2] == obj.body


@pytest.mark.parametrize(
    "extra",
    [
        'Range: bytes=0-99\r\nIf-Range: "other"\r\n',  # §13.1.5: no strong match
        "Range: bytes=0-9,20-29\r\n",  # several ranges: not cut from a moving fill
        "Range: bytes=9-1\r\n",  # §14.1.1: invalid, ignored
    ],
    ids=["if-range-mismatch", "multiple-ranges", "invalid-range"],
)
def test_a_range_not_honoured_gets_the_whole_200_from_the_fill_rfc9110_s14_2(
    proxy: Proxy, gated: GatedOrigin, pool: ThreadPoolExecutor, path: str, extra: str
) -> None:
    obj, leader = lead_fill(proxy, gated, pool, path, SIZE)
    with opened(proxy, path, extra) as sock:
        head, rest = read_head(sock)
        status, fields, _ = split(head)
        assert status == 200
        assert "content-range" not in fields
        assert "collapsed" in fields["cache-status"]
        obj.gate.set()
        got = rest + read_until_close(sock, GATE_WAIT_S)
    assert got == obj.body
    assert split(leader.result())[2] == obj.body
    assert [range_of(r) for r in obj.requests] == [None]


def test_an_unsatisfiable_range_is_a_416_rfc9110_s15_5_17(
    proxy: Proxy, gated: GatedOrigin, pool: ThreadPoolExecutor, path: str
) -> None:
    obj, leader = lead_fill(proxy, gated, pool, path, SIZE)
    status, fields, got = split(get_raw(proxy, path, f"Range: bytes={SIZE}-\r\n"))
    assert status == 416
    assert fields["content-range"] == f"bytes */{SIZE}"  # §14.4
    assert fields["content-length"] == "0"
    assert got == b""
    assert fields["etag"] == ETAG
    obj.gate.set()
    assert split(leader.result())[2] == obj.body
    assert [range_of(r) for r in obj.requests] == [None]


def test_a_fill_that_fails_never_gives_a_short_206_that_looks_complete(
    proxy: Proxy, gated: GatedOrigin, pool: ThreadPoolExecutor, path: str
) -> None:
    obj, leader = lead_fill(proxy, gated, pool, path, SIZE, reset_at_gate=True)
    first = 2 * MiB  # past what the fill has before the origin drops it
    with opened(proxy, path, f"Range: bytes={first}-{first + 99}\r\n") as sock:
        head, rest = read_head(sock)
        status, fields, _ = split(head)
        assert (status, fields["content-length"]) == (206, "100")
        obj.gate.set()
        got = rest + read_until_close(sock, GATE_WAIT_S)
    assert len(got) < 100  # the connection dropped: the client sees the body cut short
    record = record_of(proxy, fields)
    assert (record["cache"], record["bytes"]) == ("error", len(got))
    assert len(split(leader.result())[2]) < SIZE
