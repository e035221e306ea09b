"""The forwarder's own HTTP/1.1 connection (proxy/records/plain_http.py) against scripted
servers on 127.0.0.1: the answer framings of RFC 9112 §6 (Content-Length, chunked, read to
close), interim 1xx answers (RFC 9110 §15.2), keep-alive and Connection: close (RFC 9112 §9.6),
and every broken answer a clear PlainHttpError, never a hang or a wrong status."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable

import pytest

from proxy.records.plain_http import MAX_BODY_BYTES, PlainHttpError, PlainHttpPoster

Script = Callable[[int, bytes], bytes | None]  # (request number, request) -> bytes to send back


class Scripted:
    """Reads each request (head and Content-Length body) and writes what ``script`` says;
    ``None`` closes the connection without answering."""

    def __init__(self, script: Script, close_after: bool = False) -> None:
        self.script, self.close_after = script, close_after
        self.requests: list[bytes] = []
        self.connections = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                request = head + await reader.readexactly(length)
                self.requests.append(request)
                answer = self.script(len(self.requests), request)
                if answer is None:
                    break
                writer.write(answer)
                await writer.drain()
                if self.close_after:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


@contextlib.asynccontextmanager
async def served(scripted: Scripted) -> AsyncIterator[str]:
    """The batches URL of a server answering as ``scripted`` says, for the block's length."""
    server = await asyncio.start_server(scripted.handle, "127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/v1/batches"
    finally:
        server.close()
        await server.wait_closed()


CHUNKED = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"


def ok(body: bytes = b'{"status":"stored"}', extra: bytes = b"") -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n%b\r\n%b" % (len(body), extra, body)


@pytest.mark.asyncio
async def test_posts_the_body_with_its_headers_and_keeps_the_connection() -> None:
    scripted = Scripted(lambda n, request: ok())
    async with served(scripted) as url:
        poster = PlainHttpPoster(url)
        for _ in range(3):
            status, headers, body = await poster.post(b"gz" * 10, {"Content-Encoding": "gzip"})
            assert (status, body) == (200, b'{"status":"stored"}')
            assert headers["content-length"] == "19"
        poster.close()
    assert scripted.connections == 1
    request = scripted.requests[0]
    assert request.startswith(b"POST /v1/batches HTTP/1.1\r\nHost: 127.0.0.1:")
    assert b"\r\nContent-Encoding: gzip\r\n" in request
    assert request.endswith(b"\r\nContent-Length: 20\r\n\r\n" + b"gz" * 10)


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("answer", "status", "body"),
    [
        (CHUNKED + b'4\r\n{"a"\r\n3;x=y\r\n:1}\r\n0\r\n\r\n', 200, b'{"a":1}'),
        (CHUNKED + b"0\r\nTrailer: t\r\n\r\n", 200, b""),
        (b"HTTP/1.1 100 Continue\r\n\r\n" + ok(b"{}"), 200, b"{}"),
        (b"HTTP/1.1 409 Conflict\r\nContent-Length: 19\r\n\r\n{\"duplicate\": true}",
         409, b'{"duplicate": true}'),
    ],
)  # fmt: skip
async def test_answer_framings(answer: bytes, status: int, body: bytes) -> None:
    async with served(Scripted(lambda n, request: answer)) as url:
        poster = PlainHttpPoster(url)
        got_status, _, got = await poster.post(b"x", {})
        poster.close()
    assert (got_status, got) == (status, body)


@pytest.mark.asyncio
async def test_retry_after_and_other_fields_are_kept() -> None:
    answer = b"HTTP/1.1 503 Busy\r\nRetry-After: 7\r\nX-A: 1\r\nx-a: 2\r\nContent-Length: 0\r\n\r\n"
    async with served(Scripted(lambda n, request: answer)) as url:
        poster = PlainHttpPoster(url)
        status, headers, _ = await poster.post(b"x", {})
        poster.close()
    assert status == 503
    assert headers["retry-after"] == "7" and headers["x-a"] == "1, 2"


@pytest.mark.asyncio
async def test_a_body_to_the_end_of_the_connection_and_connection_close() -> None:
    to_close = Scripted(lambda n, request: b"HTTP/1.1 503 Busy\r\n\r\nlater", close_after=True)
    said_close = Scripted(lambda n, request: ok(extra=b"Connection: close\r\n"), close_after=True)
    http10 = Scripted(lambda n, request: b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\n{}")
    for scripted, expected in ((to_close, (503, b"later")), (said_close, None), (http10, None)):
        async with served(scripted) as url:
            poster = PlainHttpPoster(url)
            for _ in range(2):
                status, _, body = await poster.post(b"x", {})
                assert expected is None or (status, body) == expected
            poster.close()
        assert scripted.connections == 2  # each answer ended its connection


@pytest.mark.asyncio
async def test_a_kept_alive_connection_closed_by_the_server_is_reopened_once() -> None:
    """The coordinator's idle timeout closes a kept-alive connection: the next POST goes out
    on a new one (a batch sent twice is stored once), not as a network failure."""
    idle_closed = Scripted(lambda n, request: ok() if n != 2 else None)
    async with served(idle_closed) as url:
        poster = PlainHttpPoster(url)
        assert (await poster.post(b"1", {}))[0] == 200
        assert (await poster.post(b"2", {}))[0] == 200
        poster.close()
    assert idle_closed.connections == 2


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "answer",
    [
        b"HTTP/2 200 OK\r\n\r\n",
        b"ICY 200 OK\r\nContent-Length: 0\r\n\r\n",
        b"HTTP/1.1 2x0 OK\r\nContent-Length: 0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n",
        b"HTTP/1.1 200 OK\r\n folded: value\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % (MAX_BODY_BYTES + 1),
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}XX0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort",
        b"HTTP/1.1 200 OK\r\n" + b"X: y\r\n" * 20_000 + b"\r\n",
    ],
)
async def test_broken_answers_are_a_clear_error(answer: bytes) -> None:
    async with served(Scripted(lambda n, request: answer, close_after=True)) as url:
        with pytest.raises(PlainHttpError):
            await PlainHttpPoster(url).post(b"x", {})


@pytest.mark.asyncio
async def test_no_answer_in_time_and_nobody_listening_are_errors() -> None:
    async with served(Scripted(lambda n, request: b"")) as url:
        with pytest.raises(PlainHttpError, match="TimeoutError"):
            await PlainHttpPoster(url, total_timeout_s=0.3).post(b"x", {})
    with pytest.raises(PlainHttpError):
        await PlainHttpPoster(url).post(b"x", {})  # that server is gone


def test_only_plain_http_urls() -> None:
    for url in ("https://c.example/v1/batches", "nats://x", "http:///nohost"):
        with pytest.raises(ValueError, match="plain http"):
            PlainHttpPoster(url)
    poster = PlainHttpPoster("http://user:pw@c.example:8080/base/v1/batches?x=1")
    assert (poster.host, poster.port, poster.path) == ("c.example", 8080, "/base/v1/batches?x=1")
    assert poster.host_header == "c.example:8080"
