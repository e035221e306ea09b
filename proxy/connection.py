"""One client connection: bytes in, requests to the handler, responses out, in order.

A bare asyncio Protocol rather than aiohttp's server: a cache hit is parsed, looked up and
answered inside `data_received` with no task and no await, which is what lets one Python process
get near nginx on small hits. Requests that go to the origin run as one task at a time per
connection, so pipelined responses keep their order.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import AsyncIterator, Coroutine
from dataclasses import replace
from typing import TYPE_CHECKING, Any, cast

from proxy.http.chunked import ChunkedBodyReader
from proxy.http.request_parser import (
    CHUNKED,
    NO_BODY,
    Length,
    LengthBodyReader,
    ProtocolError,
    RequestHead,
    parse_request_head,
)

if TYPE_CHECKING:
    from proxy.server import ProxyState

log = logging.getLogger("cachet.proxy")

BODY_HIGH_WATER_BYTES = 1 << 20  # stop reading a request body this far ahead of the origin
BODY_LOW_WATER_BYTES = 1 << 18
CONTINUE_RESPONSE = b"HTTP/1.1 100 Continue\r\n\r\n"


# Parsing is a pure function of the head's bytes, and clients repeat heads byte for byte (the
# same asset, poll or health check on a keep-alive connection; many clients behind one agent).
# A bounded memo of whole single-request reads without a body skips the parse for a repeat.
# Heads in it are shared, so nothing may change a RequestHead after parsing.
_MEMO_HEAD_BYTES = 2048
_MEMO_HEADS = 4096


def _remember_head(
    heads: dict[bytes, tuple[RequestHead, int]], data: bytes, parsed: tuple[RequestHead, int]
) -> None:
    if parsed[0].body is not NO_BODY:
        return
    if len(heads) >= _MEMO_HEADS:
        heads.clear()
    heads[data] = parsed


class ClientGone(Exception):
    """The client closed its connection while its request body was still being read."""


class RequestBody:
    """A request body handed to the origin client as an async iterator, with back-pressure on
    the client's socket."""

    def __init__(self, conn: ClientConnection, expect_continue: bool) -> None:
        self._conn = conn
        self._pieces: deque[bytes] = deque()
        self._queued_bytes = 0
        self._done = False
        self._failed = False
        self._waiter: asyncio.Future[None] | None = None
        self._expect_continue = expect_continue

    @property
    def complete(self) -> bool:
        return self._done and not self._failed

    @property
    def done(self) -> bool:
        return self._done

    def push(self, pieces: list[bytes], done: bool) -> None:
        for piece in pieces:
            if piece:
                self._pieces.append(piece)
                self._queued_bytes += len(piece)
        self._done = done
        if self._queued_bytes > BODY_HIGH_WATER_BYTES:
            self._conn.pause_reading()
        self._wake()

    def fail(self) -> None:
        self._failed = True
        self._done = True
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def __aiter__(self) -> AsyncIterator[bytes]:
        if self._expect_continue and not self._done:
            self._conn.write(CONTINUE_RESPONSE)  # RFC 9110 §10.1.1: we answer it ourselves
            self._expect_continue = False
        while True:
            if self._pieces:
                piece = self._pieces.popleft()
                self._queued_bytes -= len(piece)
                if self._queued_bytes < BODY_LOW_WATER_BYTES:
                    self._conn.resume_reading()
                yield piece
                continue
            if self._failed:
                raise ClientGone
            if self._done:
                return
            self._waiter = asyncio.get_running_loop().create_future()
            await self._waiter
            self._waiter = None


class ClientConnection(asyncio.Protocol):
    def __init__(self, state: ProxyState) -> None:
        self.state = state
        self.transport: asyncio.Transport | None = None
        self.peer_ip = ""
        self.closed = False
        self.keep_alive = True
        self.responded = False  # has any byte of the current request's response been written?
        self.corked = 0  # responses queued in the Cork, waiting for their records' flush
        self._close_when_uncorked = False
        self._lost = False
        self.buffer = bytearray()
        self.task: asyncio.Task[None] | None = None
        self.body: RequestBody | None = None
        self._body_reader: LengthBodyReader | ChunkedBodyReader | None = None
        self._write_paused = False
        self._drain_waiter: asyncio.Future[None] | None = None
        self._reading_paused = False
        self.last_activity = state.clock()
        self.head_started = 0.0  # when the bytes of a still-incomplete request head began

    # -- asyncio.Protocol ----------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername")
        self.peer_ip = peer[0] if isinstance(peer, tuple) else ""
        state = self.state
        if len(state.connections) >= state.config.max_connections:
            self.transport.abort()
            self.closed = True
            return
        state.connections.add(self)
        self.head_started = state.clock()  # a new connection owes us its first request head

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._lost = True
        self.state.connections.discard(self)
        if self.body is not None and not self.body.complete:
            self.body.fail()
        self._wake_drain()

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        self._wake_drain()

    def data_received(self, data: bytes) -> None:
        self.last_activity = self.state.clock()
        if self._body_reader is not None:
            self._feed_body(data)
            return
        if self.task is not None:
            self.buffer += data
            if len(self.buffer) > self.state.config.max_head_bytes:
                self.pause_reading()  # pipelined requests waiting behind a slow one
            return
        if self.buffer:
            self.buffer += data
            data = bytes(self.buffer)
            self.buffer.clear()
        self._process(data)

    # -- the handler's side ----------------------------------------------------------------------

    def write(self, data: bytes) -> None:
        if not self.closed and self.transport is not None:
            self.responded = True
            if self.corked and self.state.cork is not None:
                self.state.cork.queue(self, data)  # keep the order of what is already queued
            else:
                self.transport.write(data)

    def write_recorded(self, data: bytes) -> None:
        """Write a response whose record was just appended to the spool: it leaves once the
        spool has been flushed (proxy.cork)."""
        if self.closed or self.transport is None:
            return
        self.responded = True
        cork = self.state.cork
        if cork is None:
            self.transport.write(data)
        else:
            cork.queue(self, data)

    def write_parts(self, parts: tuple[bytes, ...], recorded: bool) -> None:
        """A response in several buffers (a head and a large stored body) written with one
        vectored write, so the body is never copied into a new buffer."""
        if self.closed or self.transport is None:
            return
        self.responded = True
        cork = self.state.cork
        if cork is not None and (recorded or self.corked):
            cork.queue(self, parts)
        else:
            self.transport.writelines(parts)

    def uncork(self, data: bytes | tuple[bytes, ...]) -> None:
        if self._lost or self.transport is None:
            return
        if type(data) is tuple:
            self.transport.writelines(data)
        else:
            self.transport.write(data)  # type: ignore[arg-type]
        if not self.corked and self._close_when_uncorked:
            self.transport.close()

    async def drain(self) -> None:
        if self._write_paused and not self.closed:
            self._drain_waiter = asyncio.get_running_loop().create_future()
            await self._drain_waiter

    def abort(self) -> None:
        if self.closed:
            return  # already closing: a graceful close keeps its buffered answer
        self.closed = True
        self._lost = True  # nothing queued in the cork goes out either
        if self.transport is not None:
            self.transport.abort()

    def terminate(self) -> None:
        """Drop the connection now, whatever is still buffered (end of the shutdown grace)."""
        self.closed = True
        self._lost = True
        if self.transport is not None:
            self.transport.abort()

    def request_body(self) -> RequestBody | None:
        return self.body

    def pause_reading(self) -> None:
        if not self._reading_paused and self.transport is not None and not self.closed:
            self._reading_paused = True
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self._reading_paused and self.transport is not None and not self.closed:
            self._reading_paused = False
            self.transport.resume_reading()

    def close(self) -> None:
        """Close after everything written so far is flushed."""
        if not self.closed and self.transport is not None:
            self.closed = True
            if self.corked:
                self._close_when_uncorked = True
            else:
                self.transport.close()

    # -- request loop ----------------------------------------------------------------------------

    def _process(self, data: bytes) -> None:
        """Parse and dispatch the requests in `data`; what can't be handled yet goes back to
        `self.buffer`. Works on bytes, not the bytearray, so the usual one-request read costs
        no copy."""
        state = self.state
        heads = state.parsed_heads
        while data:
            parsed = heads.get(data)
            if parsed is None:
                try:
                    parsed = parse_request_head(data, max_head_bytes=state.config.max_head_bytes)
                except ProtocolError as error:
                    self._reject(error)
                    return
                if parsed is not None and parsed[1] == len(data) and len(data) <= _MEMO_HEAD_BYTES:
                    _remember_head(heads, data, parsed)
            if parsed is None:
                self.buffer += data
                if not self.head_started:
                    self.head_started = state.clock()
                return
            head, used = parsed
            data = data[used:]
            self.head_started = 0.0
            self.responded = False
            if state.draining:
                head = replace(head, keep_alive=False)  # heads may be shared (parsed_heads)
            self.keep_alive = head.keep_alive
            has_body = head.body is not NO_BODY
            if has_body:
                data = self._start_body(head, data)
            pending = state.handler.begin(self, head)
            if pending is None:
                if has_body or not self.keep_alive or self.closed:
                    self.close()  # an unread body leaves no known start for the next request
                    return
                continue
            self.buffer += data
            self.task = asyncio.get_running_loop().create_task(self._run(pending))
            return

    async def _run(self, pending: Coroutine[Any, Any, None]) -> None:
        try:
            await pending
        except ClientGone:
            self.abort()
        except Exception:
            log.exception("request failed")
            self.abort()
        finally:
            self.task = None
            self._after_response()

    def _after_response(self) -> None:
        body = self.body
        self.body = None
        if self.closed:
            return
        if body is not None and not body.complete:
            self._body_reader = None
            self.close()
            return
        if not self.keep_alive:
            self.close()
            return
        self.last_activity = self.state.clock()
        self.resume_reading()
        if self.buffer:
            data = bytes(self.buffer)
            self.buffer.clear()
            self._process(data)

    def _start_body(self, head: RequestHead, data: bytes) -> bytes:
        """Start reading the body from `data`; returns what follows a body already complete."""
        if head.body is CHUNKED:
            self._body_reader = ChunkedBodyReader()
        else:
            assert isinstance(head.body, Length)
            self._body_reader = LengthBodyReader(head.body.size_bytes)
        self.body = RequestBody(self, head.expect_continue)
        if self._feed_body(data):  # complete: the leftover was put in self.buffer
            rest = bytes(self.buffer)
            self.buffer.clear()
            return rest
        return b""

    def _feed_body(self, data: bytes) -> bool:
        """Feed request-body bytes; True once the body is complete."""
        reader, body = self._body_reader, self.body
        assert reader is not None and body is not None
        try:
            pieces, done, leftover = reader.feed(data)
        except ProtocolError as error:
            body.fail()
            if self.responded:
                self.abort()  # mid-response: dropping the connection is all that is left
            else:
                self._reject(error)  # RFC 9112 §7.1: a bad chunk is a 400, then close
            return False
        body.push(pieces, done)
        if done:
            self._body_reader = None
            self.buffer += leftover
        return done

    def _reject(self, error: ProtocolError) -> None:
        self.state.stats.rejected_requests[error.status] += 1
        body = (error.reason + "\n").encode("latin-1", "replace")
        self.write(
            b"HTTP/1.1 %d %b\r\nContent-Type: text/plain; charset=utf-8\r\n"
            b"Content-Length: %d\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n%b"
            % (error.status, _REASONS.get(error.status, b"Bad Request"), len(body), body)
        )
        self.close()

    def reject_slow_head(self) -> None:
        self.state.stats.rejected_requests[408] += 1
        self.write(
            b"HTTP/1.1 408 Request Timeout\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        )
        self.close()

    def _wake_drain(self) -> None:
        waiter = self._drain_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        self._drain_waiter = None


_REASONS = {
    400: b"Bad Request",
    408: b"Request Timeout",
    414: b"URI Too Long",
    417: b"Expectation Failed",
    431: b"Request Header Fields Too Large",
    501: b"Not Implemented",
    505: b"HTTP Version Not Supported",
}
