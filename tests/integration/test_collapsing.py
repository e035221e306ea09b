"""Concurrent misses through a real `cachet proxy`: collapsing (if any) must never hand one
client's response to another who shouldn't get it (ARCHITECTURE guarantees; RFC 9111 §4.1,
§3.5, §5.2.2.7), nor a truncated body that looks complete."""

from __future__ import annotations

import json
import socket
from concurrent.futures import ThreadPoolExecutor

from tests.integration.conftest import Origin, Proxy, Response, http_request, read_until_close

FRESH = ["Cache-Control", "max-age=300"]


def parallel(proxy: Proxy, path: str, headers: list[dict[str, str]]) -> list[Response]:
    with ThreadPoolExecutor(max_workers=len(headers)) as pool:
        return list(pool.map(lambda h: http_request(proxy.port, "GET", path, headers=h), headers))


def echoed_header(response: Response, name: str) -> str | None:
    record = json.loads(response.body)
    for field_name, value in record["headers"]:
        if field_name.lower() == name:
            return str(value)
    return None


def test_concurrent_cacheable_misses_all_get_the_body(
    proxy: Proxy, origin: Origin, path: str
) -> None:
    origin.script(path, {"headers": [FRESH], "body": "shared", "delay_s": 0.3})
    responses = parallel(proxy, path, [{} for _ in range(12)])
    assert all((r.status, r.body) == (200, b"shared") for r in responses)
    assert 1 <= origin.count(path) <= 12


def test_concurrent_private_responses_stay_private_rfc9111_s5_2_2_7(
    proxy: Proxy, origin: Origin, path: str
) -> None:
    origin.script(
        path, {"headers": [["Cache-Control", "private, max-age=300"]], "echo": True, "delay_s": 0.3}
    )
    responses = parallel(proxy, path, [{"X-Client": str(n)} for n in range(8)])
    assert [echoed_header(r, "x-client") for r in responses] == [str(n) for n in range(8)]


def test_concurrent_set_cookie_responses_stay_private(
    proxy: Proxy, origin: Origin, path: str
) -> None:
    origin.script(path, {"headers": [FRESH, ["Set-Cookie", "s=1"]], "echo": True, "delay_s": 0.3})
    responses = parallel(proxy, path, [{"X-Client": str(n)} for n in range(8)])
    assert [echoed_header(r, "x-client") for r in responses] == [str(n) for n in range(8)]


def test_concurrent_vary_variants_are_not_mixed_rfc9111_s4_1(
    proxy: Proxy, origin: Origin, path: str
) -> None:
    origin.script(
        path, {"headers": [FRESH, ["Vary", "Accept-Language"]], "echo": True, "delay_s": 0.3}
    )
    languages = ["en", "fr", "de", "en", "fr", "de"]
    responses = parallel(proxy, path, [{"Accept-Language": lang} for lang in languages])
    assert [echoed_header(r, "accept-language") for r in responses] == languages


def test_concurrent_authorized_request_is_not_served_the_shared_fill_rfc9111_s3_5(
    proxy: Proxy, origin: Origin, path: str
) -> None:
    origin.script(path, {"headers": [FRESH], "echo": True, "delay_s": 0.3})
    headers = [{"X-Client": "anon"}] * 4 + [{"X-Client": "auth", "Authorization": "Bearer a"}]
    responses = parallel(proxy, path, headers)
    assert echoed_header(responses[-1], "x-client") == "auth"
    assert echoed_header(responses[-1], "authorization") == "Bearer a"


def test_collapsed_fill_cut_by_origin_reset_never_looks_complete(
    proxy: Proxy, origin: Origin, path: str
) -> None:
    origin.script(
        path,
        {"headers": [FRESH], "body_size": 400_000, "fault": "reset_mid_body", "delay_s": 0.3},
        {"headers": [FRESH], "body_size": 400_000},
    )

    def fetch(_: int) -> bytes:
        with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as sock:
            sock.sendall(
                f"GET {path} HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n".encode()
            )
            return read_until_close(sock, 10.0)

    with ThreadPoolExecutor(max_workers=6) as pool:
        raws = list(pool.map(fetch, range(6)))
    for raw in raws:
        head, _, body = raw.partition(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 200"):
            assert head.startswith((b"HTTP/1.1 502", b"HTTP/1.1 504")) or raw == b""
            continue
        lowered = head.lower()
        if b"content-length: 400000" in lowered:
            assert len(body) <= 400_000
            complete = len(body) == 400_000
        else:
            complete = body.endswith(b"\r\n0\r\n\r\n")
        if complete:
            assert body.count(b"x") == 400_000, "a short body was framed as complete"
    after = proxy.get(path)
    assert after.body == b"x" * 400_000


def raw_get(proxy: Proxy, request: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as sock:
        sock.sendall(request)
        return read_until_close(sock, 10.0)


def test_mixed_waiters_each_get_their_own_framing_rfc9112_s6(
    proxy: Proxy, origin: Origin, path: str
) -> None:
    """GET, HEAD, a conditional GET and an HTTP/1.0 GET miss together on one key while the
    origin sends a chunked body: each gets a response framed for itself."""
    origin.script(
        path,
        {
            "headers": [FRESH, ["ETag", '"w"']],
            "body_size": 100_000,
            "framing": "chunked",
            "delay_s": 0.3,
        },
    )
    requests = [
        f"GET {path} HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n",
        f"HEAD {path} HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n",
        f'GET {path} HTTP/1.1\r\nHost: a.test\r\nIf-None-Match: "w"\r\nConnection: close\r\n\r\n',
        f"GET {path} HTTP/1.0\r\nHost: a.test\r\n\r\n",
    ]
    with ThreadPoolExecutor(max_workers=4) as pool:
        get, head, conditional, old = pool.map(lambda r: raw_get(proxy, r.encode()), requests)
    get_head, _, get_body = get.partition(b"\r\n\r\n")
    assert get_head.startswith(b"HTTP/1.1 200")
    assert get_body.count(b"x") == 100_000
    head_head, _, head_body = head.partition(b"\r\n\r\n")
    assert head_head.startswith(b"HTTP/1.1 200")
    assert head_body == b""
    conditional_head, _, conditional_body = conditional.partition(b"\r\n\r\n")
    assert conditional_head.startswith(b"HTTP/1.1 304"), conditional_head
    assert conditional_body == b""
    old_head, _, old_body = old.partition(b"\r\n\r\n")
    assert b"transfer-encoding" not in old_head.lower()
    assert old_body == b"x" * 100_000


def test_leader_client_leaving_does_not_hurt_followers(
    proxy: Proxy, origin: Origin, path: str
) -> None:
    origin.script(path, {"headers": [FRESH], "body_size": 300_000, "delay_s": 0.5})
    request = f"GET {path} HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n".encode()
    leader = socket.create_connection(("127.0.0.1", proxy.port), timeout=10)
    try:
        leader.sendall(request)
        origin.wait_for_count(path, 1)
        with ThreadPoolExecutor(max_workers=3) as pool:
            futures = [pool.submit(raw_get, proxy, request) for _ in range(3)]
            leader.close()
            raws = [f.result() for f in futures]
    finally:
        leader.close()
    for raw in raws:
        head, _, body = raw.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200")
        assert body == b"x" * 300_000
