"""The sample origin (cachet/sample_origin.py) answers each demo path as documented."""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable

import pytest
import pytest_asyncio
from aiohttp import web
from aiohttp.test_utils import TestClient

from cachet.sample_origin import (
    HELLO_TEXT,
    VALIDATED_ETAG,
    build_app,
    deterministic_bytes,
)

Client = TestClient[web.Request, web.Application]
MakeClient = Callable[..., Awaitable[Client]]


@pytest_asyncio.fixture
async def client(aiohttp_client: MakeClient) -> Client:
    return await aiohttp_client(build_app())


@pytest.mark.asyncio
async def test_index_is_html_with_links(client: Client) -> None:
    response = await client.get("/")
    assert response.status == 200
    assert response.content_type == "text/html"
    assert 'href="/hello.txt"' in await response.text()


@pytest.mark.asyncio
async def test_hello_is_one_kib_and_cacheable(client: Client) -> None:
    response = await client.get("/hello.txt")
    body = await response.read()
    assert len(body) == 1024
    assert body.decode() == HELLO_TEXT
    assert response.headers["Cache-Control"] == "max-age=300"


@pytest.mark.asyncio
async def test_api_info_is_json_with_max_age_and_counts_origin_hits(client: Client) -> None:
    first = await (await client.get("/api/info.json")).json()
    response = await client.get("/api/info.json")
    assert response.headers["Cache-Control"] == "max-age=60"
    assert (await response.json())["origin_hits"] == first["origin_hits"] + 1


@pytest.mark.asyncio
async def test_validated_sends_validators(client: Client) -> None:
    response = await client.get("/validated.txt")
    assert response.status == 200
    assert response.headers["ETag"] == VALIDATED_ETAG
    assert response.headers["Last-Modified"] == "Wed, 01 Jan 2025 00:00:00 GMT"


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({"If-None-Match": VALIDATED_ETAG}, 304),
        ({"If-None-Match": f'"other", W/{VALIDATED_ETAG}'}, 304),
        ({"If-None-Match": "*"}, 304),
        ({"If-None-Match": '"other"'}, 200),
        ({"If-Modified-Since": "Wed, 01 Jan 2025 00:00:00 GMT"}, 304),
        ({"If-Modified-Since": "Tue, 31 Dec 2024 00:00:00 GMT"}, 200),
        # RFC 9110 §13.2.2: If-None-Match is evaluated and If-Modified-Since ignored.
        ({"If-None-Match": '"other"', "If-Modified-Since": "Thu, 01 Jan 2026 00:00:00 GMT"}, 200),
    ],
)
async def test_validated_answers_conditionals_rfc9110_13_2_2(
    client: Client, headers: dict[str, str], status: int
) -> None:
    response = await client.get("/validated.txt", headers=headers)
    assert response.status == status
    assert response.headers["ETag"] == VALIDATED_ETAG
    if status == 304:
        assert await response.read() == b""


@pytest.mark.asyncio
async def test_no_store_is_marked_no_store(client: Client) -> None:
    response = await client.get("/no-store")
    assert response.headers["Cache-Control"] == "no-store"


@pytest.mark.asyncio
async def test_slow_waits_the_requested_delay(client: Client) -> None:
    response = await client.get("/slow", params={"delay_ms": "0"})
    assert response.status == 200
    assert "after 0 ms" in await response.text()
    bad = await client.get("/slow", params={"delay_ms": "soon"})
    assert bad.status == 400


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("accept_language", "greeting"),
    [("fr-CH, fr;q=0.9", "Bonjour!\n"), ("de", "Hallo!\n"), ("ja", "Hello!\n"), ("", "Hello!\n")],
)
async def test_vary_negotiates_language(
    client: Client, accept_language: str, greeting: str
) -> None:
    response = await client.get("/vary", headers={"Accept-Language": accept_language})
    assert response.headers["Vary"] == "Accept-Language"
    assert await response.text() == greeting


@pytest.mark.asyncio
async def test_large_is_one_mib_of_the_pattern(client: Client) -> None:
    response = await client.get("/large.bin")
    body = await response.read()
    assert len(body) == 1024 * 1024
    assert body == bytes(range(256)) * 4096
    assert response.headers["Content-Length"] == str(1024 * 1024)


@pytest.mark.asyncio
@pytest.mark.parametrize("n", [0, 1, 255, 256, 257, 70_000])
async def test_bytes_n_returns_n_deterministic_bytes(client: Client, n: int) -> None:
    first = await (await client.get(f"/bytes/{n}")).read()
    response = await client.get(f"/bytes/{n}")
    second = await response.read()
    assert len(first) == n
    assert first == second == deterministic_bytes(0, n)
    assert response.headers["Cache-Control"] == "max-age=3600"


@pytest.mark.asyncio
@pytest.mark.parametrize("n", ["-1", "abc", str(64 * 1024 * 1024 + 1)])
async def test_bytes_n_refuses_bad_sizes(client: Client, n: str) -> None:
    response = await client.get(f"/bytes/{n}")
    assert response.status == 400


def test_deterministic_bytes_continue_across_chunks() -> None:
    whole = deterministic_bytes(0, 1000)
    assert deterministic_bytes(0, 300) + deterministic_bytes(300, 700) == whole
    assert (
        hashlib.sha256(whole).digest()
        == hashlib.sha256(bytes(range(256)) * 3 + whole[768:]).digest()
    )
