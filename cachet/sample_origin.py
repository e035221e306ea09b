"""A small demo origin that ships with Cachet: `cachet sample-origin --listen 127.0.0.1:8000`.

Each path shows one caching behaviour, so a new user can watch the proxy's Cache-Status change:

    /               HTML index linking to everything (max-age=60)
    /hello.txt      a 1 KiB text object (max-age=300)
    /api/info.json  a JSON API response (max-age=60) counting how often the origin was asked
    /validated.txt  ETag + Last-Modified (no-cache); answers conditionals with 304
    /no-store       never cacheable (no-store)
    /slow           answers after ?delay_ms= (default 1000, at most 10000); max-age=60
    /vary           Vary: Accept-Language; greets in en, fr or de
    /large.bin      1 MiB of deterministic bytes (max-age=3600)
    /bytes/{n}      n deterministic bytes (max-age=3600), streamed; n at most 64 MiB
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import mimetypes
import sys
from datetime import UTC, datetime
from email.utils import format_datetime
from pathlib import Path

from aiohttp import web

KIB = 1024
MIB = 1024 * KIB
MAX_BYTES_N = 64 * MIB
MAX_DELAY_MS = 10_000
_PATTERN = bytes(range(256))
_CHUNK_BYTES = 64 * KIB
HELLO_TEXT = ("Hello from Cachet's sample origin.\n" * 40)[: KIB - 1] + "\n"
VALIDATED_BODY = b"This object carries an ETag and a Last-Modified date.\n"
VALIDATED_ETAG = '"' + hashlib.sha256(VALIDATED_BODY).hexdigest()[:16] + '"'
VALIDATED_LAST_MODIFIED = datetime(2025, 1, 1, tzinfo=UTC)
GREETINGS = {"en": "Hello", "fr": "Bonjour", "de": "Hallo"}
HITS_KEY = web.AppKey("origin_hits", dict[str, int])

_INDEX = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Cachet sample origin</title></head>
<body><h1>Cachet sample origin</h1>
<p>Fetch these through <code>cachet proxy</code> and watch the Cache-Status header.</p>
<ul>
<li><a href="/hello.txt">/hello.txt</a>: 1 KiB text, max-age=300</li>
<li><a href="/api/info.json">/api/info.json</a>: JSON, max-age=60</li>
<li><a href="/validated.txt">/validated.txt</a>: ETag and Last-Modified, revalidated each time</li>
<li><a href="/no-store">/no-store</a>: never stored</li>
<li><a href="/slow">/slow</a>: answers after a delay</li>
<li><a href="/vary">/vary</a>: varies on Accept-Language</li>
<li><a href="/large.bin">/large.bin</a>: 1 MiB binary</li>
<li><a href="/bytes/4096">/bytes/{n}</a>: n deterministic bytes</li>
</ul></body></html>
"""


def deterministic_bytes(offset: int, size_bytes: int) -> bytes:
    """Return `size_bytes` bytes of the repeating 0..255 pattern starting at `offset`."""
    start = offset % len(_PATTERN)
    repeats = (start + size_bytes) // len(_PATTERN) + 1
    return (_PATTERN * repeats)[start : start + size_bytes]


def _count(request: web.Request, name: str) -> int:
    hits = request.app[HITS_KEY]
    hits[name] = hits.get(name, 0) + 1
    return hits[name]


async def index(request: web.Request) -> web.Response:
    _count(request, "index")
    return web.Response(text=_INDEX, content_type="text/html", headers=_max_age(60))


async def hello(request: web.Request) -> web.Response:
    _count(request, "hello")
    return web.Response(text=HELLO_TEXT, content_type="text/plain", headers=_max_age(300))


async def api_info(request: web.Request) -> web.Response:
    body = {"service": "cachet sample origin", "origin_hits": _count(request, "api_info")}
    return web.Response(
        text=json.dumps(body) + "\n", content_type="application/json", headers=_max_age(60)
    )


async def validated(request: web.Request) -> web.Response:
    """Answer conditionals per RFC 9110 §13.2.2: If-None-Match first, else If-Modified-Since."""
    _count(request, "validated")
    headers = {
        "Cache-Control": "no-cache",
        "ETag": VALIDATED_ETAG,
        "Last-Modified": format_datetime(VALIDATED_LAST_MODIFIED, usegmt=True),
    }
    if _is_not_modified(request):
        return web.Response(status=304, headers=headers)
    return web.Response(body=VALIDATED_BODY, content_type="text/plain", headers=headers)


def _is_not_modified(request: web.Request) -> bool:
    if_none_match = request.headers.get("If-None-Match")
    if if_none_match is not None:
        tags = [tag.strip().removeprefix("W/") for tag in if_none_match.split(",")]
        return "*" in tags or VALIDATED_ETAG in tags  # weak comparison, RFC 9110 §13.1.2
    since = request.if_modified_since
    return since is not None and since >= VALIDATED_LAST_MODIFIED


async def no_store(request: web.Request) -> web.Response:
    count = _count(request, "no_store")
    return web.Response(
        text=f"origin asked {count} times; this response is never stored\n",
        headers={"Cache-Control": "no-store"},
    )


async def slow(request: web.Request) -> web.Response:
    delay_ms = _int_query(request, "delay_ms", 1000, MAX_DELAY_MS)
    await asyncio.sleep(delay_ms / 1000)
    count = _count(request, "slow")
    return web.Response(text=f"slow response #{count} after {delay_ms} ms\n", headers=_max_age(60))


async def vary(request: web.Request) -> web.Response:
    _count(request, "vary")
    language = _pick_language(request.headers.get("Accept-Language", ""))
    headers = {**_max_age(60), "Vary": "Accept-Language", "Content-Language": language}
    return web.Response(text=f"{GREETINGS[language]}!\n", headers=headers)


def _pick_language(accept_language: str) -> str:
    for item in accept_language.split(","):
        tag = item.split(";")[0].strip().lower()[:2]
        if tag in GREETINGS:
            return tag
    return "en"


async def large(request: web.Request) -> web.StreamResponse:
    return await _stream_bytes(request, MIB)


async def bytes_n(request: web.Request) -> web.StreamResponse:
    text = request.match_info["n"]
    if not text.isascii() or not text.isdigit() or int(text) > MAX_BYTES_N:
        raise web.HTTPBadRequest(text=f"n must be a whole number from 0 to {MAX_BYTES_N}\n")
    return await _stream_bytes(request, int(text))


async def _stream_bytes(request: web.Request, size_bytes: int) -> web.StreamResponse:
    _count(request, "bytes")
    response = web.StreamResponse(headers=_max_age(3600))
    response.content_type = "application/octet-stream"
    response.content_length = size_bytes
    response.headers["ETag"] = f'"bytes-{size_bytes}"'
    await response.prepare(request)
    if request.method != "HEAD":
        for offset in range(0, size_bytes, _CHUNK_BYTES):
            await response.write(
                deterministic_bytes(offset, min(_CHUNK_BYTES, size_bytes - offset))
            )
    await response.write_eof()
    return response


def _max_age(seconds: int) -> dict[str, str]:
    return {"Cache-Control": f"max-age={seconds}"}


def _int_query(request: web.Request, name: str, default: int, maximum: int) -> int:
    text = request.query.get(name)
    if text is None:
        return default
    if not text.isascii() or not text.isdigit():
        raise web.HTTPBadRequest(text=f"{name} must be a whole number\n")
    return min(int(text), maximum)


CONTENT_KEY = web.AppKey("content", dict)


async def content_file(request: web.Request) -> web.Response:
    """A creator's file from --content-dir: cacheable for a minute, with a strong ETag."""
    files: dict[str, tuple[bytes, str, str]] = request.app[CONTENT_KEY]
    found = files.get(request.match_info["name"])
    if found is None:
        raise web.HTTPNotFound(text="no such file\n")
    body, media_type, etag = found
    headers = {"Cache-Control": "public, max-age=60", "ETag": etag}
    if etag in request.headers.get("If-None-Match", ""):
        return web.Response(status=304, headers=headers)
    return web.Response(body=body, content_type=media_type, headers=headers)


def load_content(directory: Path) -> dict[str, tuple[bytes, str, str]]:
    """Every regular, non-hidden file directly in `directory`: body, media type, ETag."""
    files = {}
    for path in sorted(directory.iterdir()):
        if path.is_file() and not path.name.startswith("."):
            body = path.read_bytes()
            media_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
            files[path.name] = (body, media_type, f'"{hashlib.sha256(body).hexdigest()[:32]}"')
    return files


def build_app(
    content_dir: Path | None = None, content_prefix: str = "/creator/"
) -> web.Application:
    app = web.Application()
    app[HITS_KEY] = {}
    app[CONTENT_KEY] = load_content(content_dir) if content_dir is not None else {}
    app.router.add_get(content_prefix.rstrip("/") + "/{name}", content_file)
    app.router.add_get("/", index)
    app.router.add_get("/hello.txt", hello)
    app.router.add_get("/api/info.json", api_info)
    app.router.add_get("/validated.txt", validated)
    app.router.add_get("/no-store", no_store)
    app.router.add_get("/slow", slow)
    app.router.add_get("/vary", vary)
    app.router.add_get("/large.bin", large)
    app.router.add_get("/bytes/{n}", bytes_n)
    return app


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "sample-origin",
        help="run a small demo origin to put the proxy in front of",
        description=__doc__.split("\n\n", 1)[1] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--listen", default="127.0.0.1:8000", metavar="HOST:PORT", help="default 127.0.0.1:8000"
    )
    parser.add_argument(
        "--content-dir",
        metavar="DIR",
        default=None,
        help="also serve the files of DIR (a creator's content) under --content-prefix",
    )
    parser.add_argument(
        "--content-prefix", metavar="PATH", default="/creator/", help="default /creator/"
    )
    parser.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    host, sep, port = str(args.listen).rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        print(f"cachet sample-origin: {args.listen!r} is not HOST:PORT", file=sys.stderr)
        return 2
    host = host.strip("[]") or "0.0.0.0"  # noqa: S104 - ":8000" means every interface
    print(f"sample origin on http://{args.listen}", flush=True)
    try:
        content_dir = Path(args.content_dir) if args.content_dir else None
        app = build_app(content_dir, args.content_prefix)
        web.run_app(app, host=host, port=int(port), print=None, access_log=None)
    except OSError as exc:
        print(f"cachet sample-origin: cannot listen on {args.listen}: {exc}", file=sys.stderr)
        return 1
    return 0
