"""A scriptable origin for the integration tests: a raw asyncio HTTP/1.1 server, so it can also
misbehave on the wire (stall, reset, garbage, odd framing, 1xx interim responses).

Run as ``python -m tests.integration.origin_app``; it binds 127.0.0.1 on a free port and prints
``PORT <n>`` on stdout once listening. Control API on the same port (not recorded):

- ``POST /_ctl/script`` with JSON ``{"path": "/x", "responses": [spec, ...]}``: the n-th request
  to ``/x`` (query ignored) is answered with ``responses[min(n, len - 1)]``.
- ``GET /_ctl/requests?path=/x``: JSON list of the requests ``/x`` received, in order.

A spec (all keys optional): ``status``, ``reason``, ``headers`` (list of [name, value]),
``body`` (text), ``body_size`` (that many ``x`` bytes), ``stamped_size`` (that many bytes of
``stamped_body``: every byte depends on its position), ``echo`` (body = JSON of the request),
``framing`` (``length`` | ``close`` | ``chunked``), ``interim`` (list of [status, headers]),
``delay_s`` (before answering), ``fault`` (``reset_before`` | ``close_before`` | ``garbage`` |
``stall`` | ``reset_mid_body`` | ``raw``: write ``raw`` (latin-1 text) verbatim, then close).
Unscripted paths echo the request with ``Cache-Control: no-store``.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import signal
import socket
import struct
from collections import defaultdict
from typing import Any
from urllib.parse import parse_qs, urlsplit

MAX_HEAD_BYTES = 1 << 20
KEPT_BODY_BYTES = 1 << 16
STALL_S = 30.0

Spec = dict[str, Any]
Record = dict[str, Any]


class BadRequest(Exception):
    pass


class OriginState:
    def __init__(self) -> None:
        self.scripts: dict[str, list[Spec]] = {}
        self.requests: defaultdict[str, list[Record]] = defaultdict(list)


async def read_head(reader: asyncio.StreamReader) -> tuple[str, str, str, list[list[str]]] | None:
    try:
        raw = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError:
        return None
    except asyncio.LimitOverrunError as exc:
        raise BadRequest("head too large") from exc
    lines = raw[:-4].decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3:
        raise BadRequest("bad request line")
    headers = []
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers.append([name, value.strip(" \t")])
    return parts[0], parts[1], parts[2], headers


def get_header(headers: list[list[str]], name: str) -> str | None:
    for field_name, value in headers:
        if field_name.lower() == name:
            return value
    return None


async def read_chunked(reader: asyncio.StreamReader, sink: BodySink) -> list[list[str]]:
    while True:
        size_line = (await reader.readuntil(b"\r\n"))[:-2]
        size = int(size_line.split(b";")[0].strip(), 16)
        if size == 0:
            break
        sink.add(await reader.readexactly(size))
        await reader.readexactly(2)
    trailers: list[list[str]] = []
    while True:
        line = (await reader.readuntil(b"\r\n"))[:-2]
        if not line:
            return trailers
        name, _, value = line.decode("latin-1").partition(":")
        trailers.append([name, value.strip()])


class BodySink:
    def __init__(self) -> None:
        self.hash = hashlib.sha256()
        self.length = 0
        self.kept = bytearray()

    def add(self, data: bytes) -> None:
        self.hash.update(data)
        self.length += len(data)
        if len(self.kept) < KEPT_BODY_BYTES:
            self.kept += data[: KEPT_BODY_BYTES - len(self.kept)]


async def read_body(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, headers: list[list[str]]
) -> tuple[BodySink, list[list[str]], bool]:
    sink = BodySink()
    if (get_header(headers, "expect") or "").lower() == "100-continue":
        writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
    te = get_header(headers, "transfer-encoding")
    if te is not None and "chunked" in te.lower():
        return sink, await read_chunked(reader, sink), True
    remaining = int(get_header(headers, "content-length") or "0")
    while remaining > 0:
        data = await reader.read(min(remaining, 1 << 16))
        if not data:
            raise BadRequest("body cut short")
        sink.add(data)
        remaining -= len(data)
    return sink, [], False


def make_record(
    method: str, target: str, version: str, headers: list[list[str]], sink: BodySink, chunked: bool
) -> Record:
    return {
        "method": method,
        "target": target,
        "version": version,
        "headers": headers,
        "body_len": sink.length,
        "body_sha256": sink.hash.hexdigest(),
        "body": bytes(sink.kept).decode("latin-1"),
        "chunked": chunked,
    }


def head_bytes(status: int, reason: str, headers: list[list[str]]) -> bytes:
    lines = [f"HTTP/1.1 {status} {reason}"] + [f"{n}: {v}" for n, v in headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def reset(writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


class Origin:
    def __init__(self) -> None:
        self.state = OriginState()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while await self.handle_one(reader, writer):
                pass
        except (BadRequest, ValueError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            writer.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
        except ConnectionError:
            pass
        finally:
            if not writer.transport.is_closing():
                writer.close()

    async def handle_one(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        head = await read_head(reader)
        if head is None:
            return False
        method, target, version, headers = head
        sink, trailers, chunked = await read_body(reader, writer, headers)
        path = urlsplit(target).path
        if path.startswith("/_ctl/"):
            await self.control(writer, method, target, sink)
            return True
        record = make_record(method, target, version, headers, sink, chunked)
        record["trailers"] = trailers
        script = self.state.scripts.get(path)
        index = len(self.state.requests[path])
        self.state.requests[path].append(record)
        if script:
            spec = script[min(index, len(script) - 1)]
        else:
            spec = {"echo": True, "headers": [["Cache-Control", "no-store"]]}
        keep = await self.answer(writer, method, spec, record)
        close_asked = (get_header(headers, "connection") or "").lower() == "close"
        return keep and not close_asked

    async def control(
        self, writer: asyncio.StreamWriter, method: str, target: str, sink: BodySink
    ) -> None:
        parts = urlsplit(target)
        if method == "POST" and parts.path == "/_ctl/script":
            order = json.loads(bytes(sink.kept))
            self.state.scripts[order["path"]] = order["responses"]
            writer.write(b"HTTP/1.1 204 No Content\r\n\r\n")
            return
        path = parse_qs(parts.query).get("path", [""])[0]
        body = json.dumps(self.state.requests.get(path, [])).encode()
        writer.write(
            head_bytes(200, "OK", [["Content-Length", str(len(body))]]) + body,
        )
        await writer.drain()

    async def answer(
        self, writer: asyncio.StreamWriter, method: str, spec: Spec, record: Record
    ) -> bool:
        """Write the scripted answer; return whether the connection stays open."""
        await asyncio.sleep(float(spec.get("delay_s", 0)))
        fault = spec.get("fault")
        if fault == "reset_before":
            reset(writer)
            return False
        if fault == "close_before":
            writer.close()
            return False
        if fault == "garbage":
            writer.write(b"\x00\x01garbage that is not HTTP\r\n\xff\xfe\r\n\r\n")
            await writer.drain()
            writer.close()
            return False
        if fault == "raw":
            writer.write(str(spec["raw"]).encode("latin-1"))
            await writer.drain()
            writer.close()
            return False
        if fault == "stall":
            await asyncio.sleep(STALL_S)
            reset(writer)
            return False
        for status, fields in spec.get("interim", []):
            writer.write(head_bytes(int(status), "Interim", fields))
        body = self.body_of(spec, record)
        framing = spec.get("framing", "length")
        headers = [list(pair) for pair in spec.get("headers", [])]
        if method == "HEAD":
            framing = "length"
        if framing == "length":
            headers.append(["Content-Length", str(len(body))])
        elif framing == "chunked":
            headers += [["Transfer-Encoding", "chunked"], ["Trailer", "X-Checksum"]]
        status = int(spec.get("status", 200))
        writer.write(head_bytes(status, str(spec.get("reason", "OK")), headers))
        if method == "HEAD":
            await writer.drain()
            return True
        return await self.write_body(writer, body, framing, fault)

    @staticmethod
    def body_of(spec: Spec, record: Record) -> bytes:
        if spec.get("echo"):
            return json.dumps(record).encode()
        if "body_size" in spec:
            return b"x" * int(spec["body_size"])
        if "stamped_size" in spec:
            return stamped_body(int(spec["stamped_size"]))
        return str(spec.get("body", "")).encode()

    @staticmethod
    async def write_body(
        writer: asyncio.StreamWriter, body: bytes, framing: str, fault: str | None
    ) -> bool:
        if fault == "reset_mid_body":
            half = body[: len(body) // 2]
            writer.write(b"%x\r\n%b\r\n" % (len(half), half) if framing == "chunked" else half)
            await writer.drain()
            await asyncio.sleep(0.2)
            reset(writer)
            return False
        if framing == "chunked":
            third = max(1, len(body) // 3)
            for start in range(0, len(body), third):
                piece = body[start : start + third]
                writer.write(b'%x;ext=1;name="v"\r\n%b\r\n' % (len(piece), piece))
            writer.write(b"0\r\nX-Checksum: abc\r\n\r\n")
            await writer.drain()
            return True
        writer.write(body)
        await writer.drain()
        if framing == "close":
            writer.close()
            return False
        return True


def stamped_body(size: int) -> bytes:
    """``size`` bytes in which each 8-byte block is its own offset (big-endian): a slice taken
    from the wrong place, or two blocks swapped, never matches."""
    blocks = -(-size // 8)
    return b"".join(struct.pack(">Q", 8 * i) for i in range(blocks))[:size]


async def main() -> None:
    origin = Origin()
    server = await asyncio.start_server(origin.handle, "127.0.0.1", 0, limit=MAX_HEAD_BYTES)
    port = server.sockets[0].getsockname()[1]
    print(f"PORT {port}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    async with server:
        await stop.wait()


if __name__ == "__main__":
    asyncio.run(main())
