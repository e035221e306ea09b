"""One keep-alive HTTP/1.1 connection for the forwarder's POSTs to a plain-http coordinator.

aiohttp's client spent ~250-500 µs of CPU per POST on the dev box (its request and response
objects, multidicts, timers), a tenth of the records process's CPU at 1,000 records a batch;
writing the request and reading the answer here costs ~25 µs. Only what a batch POST needs:
``Content-Length`` bodies out; ``Content-Length``, ``chunked`` or read-to-close bodies in
(RFC 9112 §6), interim 1xx answers skipped; the connection reopened after any error or a
``Connection: close``. https coordinators keep aiohttp (TLS and everything else it knows).
"""

from __future__ import annotations

import asyncio
import contextlib
from urllib.parse import urlsplit

from proxy.http.chunked import ChunkedBodyReader
from proxy.http.fields import split_list
from proxy.http.request_parser import ProtocolError, parse_field_lines

MAX_HEAD_BYTES = 64 * 1024
MAX_BODY_BYTES = 1024 * 1024  # a coordinator's answer to a batch is a small JSON object


class PlainHttpError(OSError):
    """The connection failed, timed out, or the answer was not HTTP/1.x as RFC 9112 says."""


class PlainHttpPoster:
    def __init__(self, url: str, *, connect_timeout_s: float = 5, total_timeout_s: float = 60):
        parts = urlsplit(url)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"not a plain http URL: {url!r}")
        self.host, self.port = parts.hostname, parts.port or 80
        self.path = parts.path or "/"
        if parts.query:
            self.path += "?" + parts.query
        self.host_header = parts.netloc.rsplit("@", 1)[-1]
        self.connect_timeout_s, self.total_timeout_s = connect_timeout_s, total_timeout_s
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def post(self, body: bytes, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        """(status, headers with lower-case names, body) of the answer; PlainHttpError else.
        A kept-alive connection the coordinator closed meanwhile (its idle timeout) is
        reopened and the batch sent once more: a batch sent twice is acknowledged twice and
        stored once (issue 5)."""
        reused = self._writer is not None
        try:
            async with asyncio.timeout(self.total_timeout_s):
                try:
                    return await self._exchange(body, headers)
                except (asyncio.IncompleteReadError, ConnectionError):
                    if not reused:
                        raise
                    self.close()
                    return await self._exchange(body, headers)
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError,
                TimeoutError) as exc:  # fmt: skip
            self.close()
            if isinstance(exc, PlainHttpError):
                raise
            raise PlainHttpError(f"{type(exc).__name__}: {exc}") from exc

    async def _exchange(
        self, body: bytes, headers: dict[str, str]
    ) -> tuple[int, dict[str, str], bytes]:
        if self._writer is None or self._writer.is_closing():
            async with asyncio.timeout(self.connect_timeout_s):
                self._reader, self._writer = await asyncio.open_connection(
                    self.host, self.port, limit=MAX_HEAD_BYTES
                )
        reader, writer = self._reader, self._writer
        assert reader is not None
        lines = [f"POST {self.path} HTTP/1.1", f"Host: {self.host_header}"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        lines.append(f"Content-Length: {len(body)}")
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        writer.write(body)
        await writer.drain()
        while True:
            status, version, answer = await self._read_head(reader)
            if not 100 <= status < 200:
                break
        payload = await self._read_body(reader, answer)
        tokens = {token.lower() for token in split_list([answer.get("connection", "")])}
        if "close" in tokens or (version == "HTTP/1.0" and "keep-alive" not in tokens):
            self.close()
        return status, answer, payload

    @staticmethod
    async def _read_head(reader: asyncio.StreamReader) -> tuple[int, str, dict[str, str]]:
        head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
        line_end = head.find("\r\n")
        status_line = head[:line_end]
        version, _, rest = status_line.partition(" ")
        code = rest[:3]
        if version not in ("HTTP/1.1", "HTTP/1.0") or not code.isdigit() or len(code) != 3:
            raise PlainHttpError(f"not an HTTP/1.x status line: {status_line[:80]!r}")
        try:  # the field lines, as the proxy reads its clients' (RFC 9112 §5)
            fields = parse_field_lines(head[: len(head) - 2], line_end + 2)
        except ProtocolError as exc:
            raise PlainHttpError(f"malformed header section: {exc.reason}") from None
        answer: dict[str, str] = {}
        for name, value in fields:
            key = name.lower()
            answer[key] = f"{answer[key]}, {value}" if key in answer else value
        return int(code), version, answer

    @staticmethod
    async def _read_body(reader: asyncio.StreamReader, answer: dict[str, str]) -> bytes:
        length = answer.get("content-length")
        chunked = "chunked" in answer.get("transfer-encoding", "").lower()
        if length is not None and not chunked:
            if not length.isdigit() or int(length) > MAX_BODY_BYTES:
                raise PlainHttpError(f"bad Content-Length: {length[:40]!r}")
            return await reader.readexactly(int(length))
        decoder = ChunkedBodyReader() if chunked else None
        parts: list[bytes] = []
        size = 0
        while True:
            data = await reader.read(64 * 1024)
            if decoder is None:  # the body ends where the connection does
                answer["connection"] = "close"
                if not data:
                    break
                pieces, done = [data], False
            else:
                if not data:
                    raise PlainHttpError("connection closed inside a chunked answer")
                try:  # the chunked coding as the proxy decodes its clients' (RFC 9112 §7.1)
                    pieces, done, leftover = decoder.feed(data)
                except ProtocolError as exc:
                    raise PlainHttpError(f"malformed chunked answer: {exc.reason}") from None
                if leftover:  # bytes after the answer: no answer of ours; start afresh
                    answer["connection"] = "close"
            size += sum(map(len, pieces))
            if size > MAX_BODY_BYTES:
                raise PlainHttpError("answer body too large")
            parts += pieces
            if done:
                break
        return b"".join(parts)

    def close(self) -> None:
        if self._writer is not None:
            with contextlib.suppress(Exception):
                self._writer.close()
        self._reader = self._writer = None
