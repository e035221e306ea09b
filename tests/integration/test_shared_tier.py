"""Two real proxies sharing one Redis (issue 3, shared tier; docs/design/tiered-cache.md): what
one fetched is a HIT on the other with no second origin request; a corrupted or truncated value
is never served; a dead, stopped or silent Redis never fails a client request."""

from __future__ import annotations

import json
import re
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from proxy.cache.tiers.shared_format import storage_key
from tests.integration.conftest import Origin, Proxy, ProxyFactory, http_request
from tests.ports import free_port
from tests.shared_redis import (
    REDIS_URL,
    client,
    delete_prefix,
    ensure_redis,
    private_redis,
    stop_redis,
    unique_prefix,
)

FRESH = ["Cache-Control", "max-age=300"]
HOST = {"Host": "cache.test"}  # one site: every proxy sees the same Host, so the same cache key
TOKEN = "shared-tier-purge-token"


@pytest.fixture
def prefix() -> Iterator[str]:
    reason = ensure_redis()
    if reason is not None:
        pytest.skip(reason)
    name = unique_prefix()
    yield name
    delete_prefix(name)


def _flags(url: str, prefix: str, *more: str) -> tuple[str, ...]:
    return ("--shared-cache-url", url, "--shared-key-prefix", prefix, "--purge-token", TOKEN,
            *more)  # fmt: skip


def _metric(proxy: Proxy, name: str) -> float:
    text = proxy.admin("/metrics").body.decode()
    found = re.search(rf"^{re.escape(name)} ([0-9.e+]+)$", text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


def _name(prefix: str, path: str) -> str:
    return storage_key(prefix, f"http://cache.test{path}")


def _wait_stored(prefix: str, path: str, port: int = 6379) -> bytes:
    deadline = time.monotonic() + 10
    with client(port) as r:
        while True:
            value = r.get(_name(prefix, path))
            if value is not None:
                return bytes(value)
            assert time.monotonic() < deadline, "the write never reached Redis"
            time.sleep(0.02)


def _record(proxy: Proxy, request_id: str | None) -> dict[str, object]:
    receipt = proxy.admin(f"/_cachet/receipts/{request_id}")
    record: dict[str, object] = json.loads(receipt.body)["record"]
    return record


def test_what_one_proxy_fetched_is_a_hit_on_the_other(
    origin: Origin, proxy_factory: ProxyFactory, prefix: str, path: str
) -> None:
    origin.script(path, {"headers": [FRESH, ["Age", "100"]], "body": "shared body"})
    a = proxy_factory(origin.url, *_flags(REDIS_URL, prefix))
    b = proxy_factory(origin.url, *_flags(REDIS_URL, prefix))
    assert a.get(path, headers=HOST).header("X-Cache-Status") == "MISS"
    _wait_stored(prefix, path)
    on_b = b.get(path, headers=HOST)
    assert (on_b.status, on_b.body) == (200, b"shared body")
    assert on_b.header("X-Cache-Status") == "HIT"
    assert origin.count(path) == 1
    # RFC 9111 §4.2.3: the age the origin reported travels with the entry.
    assert int(on_b.header("Age") or "0") >= 100
    # The record contract has no "shared" tier: a hit below memory is recorded as "disk".
    assert _record(b, on_b.header("X-Request-ID"))["tier"] == "disk"
    assert _metric(b, "cachet_shared_hits_total") == 1
    again = b.get(path, headers=HOST)  # promoted into B's memory
    assert _record(b, again.header("X-Request-ID"))["tier"] == "memory"
    assert _metric(b, "cachet_shared_hits_total") == 1
    assert origin.count(path) == 1


def test_a_corrupted_or_truncated_value_is_never_served(
    origin: Origin, proxy_factory: ProxyFactory, prefix: str, path: str
) -> None:
    flipped, cut = f"{path}-flipped", f"{path}-cut"
    for target in (flipped, cut):
        origin.script(target, {"headers": [FRESH], "body": "x" * 1000})
    a = proxy_factory(origin.url, *_flags(REDIS_URL, prefix))
    b = proxy_factory(origin.url, *_flags(REDIS_URL, prefix))
    for target in (flipped, cut):
        a.get(target, headers=HOST)
    value = _wait_stored(prefix, flipped)
    damaged = bytearray(value)
    damaged[len(damaged) // 2] ^= 0x01  # one bit in the body
    with client() as r:
        r.set(_name(prefix, flipped), bytes(damaged))
        r.set(_name(prefix, cut), _wait_stored(prefix, cut)[:-10])
    for target in (flipped, cut):
        response = b.get(target, headers=HOST)
        assert (response.status, response.body) == (200, b"x" * 1000)
        assert response.header("X-Cache-Status") == "MISS"
        assert origin.count(target) == 2
    assert _metric(b, 'cachet_shared_errors_total{kind="corrupt"}') == 2
    assert _metric(b, "cachet_shared_hits_total") == 0


def test_a_purge_by_url_deletes_the_shared_copy(
    origin: Origin, proxy_factory: ProxyFactory, prefix: str, path: str
) -> None:
    origin.script(path, {"headers": [FRESH], "body": "old"}, {"headers": [FRESH], "body": "new"})
    a = proxy_factory(origin.url, *_flags(REDIS_URL, prefix))
    a.get(path, headers=HOST)
    _wait_stored(prefix, path)
    purged = http_request(
        a.admin_port, "POST", "/_cachet/purge",
        headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
        body=json.dumps({"urls": [f"http://cache.test{path}"]}).encode(),
    )  # fmt: skip
    assert purged.status == 200
    deadline = time.monotonic() + 10
    with client() as r:
        while r.exists(_name(prefix, path)):
            assert time.monotonic() < deadline, "the purge never deleted the shared copy"
            time.sleep(0.02)
    b = proxy_factory(origin.url, *_flags(REDIS_URL, prefix))
    assert b.get(path, headers=HOST).body == b"new"
    assert origin.count(path) == 2


def test_responses_the_cache_must_not_share_never_reach_redis(
    origin: Origin, proxy_factory: ProxyFactory, prefix: str, path: str
) -> None:
    """RFC 9111 §3.5: a request with Authorization is not stored without an explicit directive;
    a Set-Cookie (stored only with cache_set_cookie) never leaves the proxy that received it."""
    authorized, cookie, control = f"{path}-auth", f"{path}-cookie", f"{path}-plain"
    origin.script(authorized, {"headers": [FRESH], "body": "for alice"})
    origin.script(cookie, {"headers": [FRESH, ["Set-Cookie", "session=alice"]], "body": "c"})
    origin.script(control, {"headers": [FRESH], "body": "p"})
    a = proxy_factory(origin.url, *_flags(REDIS_URL, prefix, "--cache-set-cookie"))
    a.get(authorized, headers={**HOST, "Authorization": "Bearer alice"})
    a.get(cookie, headers=HOST)
    a.get(control, headers=HOST)
    _wait_stored(prefix, control)  # written after the others: the queue is in order
    with client() as r:
        assert not r.exists(_name(prefix, authorized))
        shared_cookie = r.get(_name(prefix, cookie))
        assert shared_cookie is not None  # stored (cache_set_cookie), without the cookie
        assert b"session=alice" not in shared_cookie
    b = proxy_factory(origin.url, *_flags(REDIS_URL, prefix))
    assert b.get(authorized, headers=HOST).body == b"for alice"
    assert origin.count(authorized) == 2  # B had nothing to serve it from
    from_shared = b.get(cookie, headers=HOST)
    assert (from_shared.header("X-Cache-Status"), from_shared.body) == ("HIT", b"c")
    assert from_shared.header("Set-Cookie") is None
    assert origin.count(cookie) == 1


def test_a_stopped_redis_never_fails_a_request_and_sharing_resumes_when_it_is_back(
    origin: Origin, proxy_factory: ProxyFactory, path: str
) -> None:
    port = free_port()
    prefix = unique_prefix()
    url = f"redis://127.0.0.1:{port}/0"
    with private_redis(port) as redis_proc:
        a = proxy_factory(origin.url, *_flags(url, prefix))
        b = proxy_factory(origin.url, *_flags(url, prefix))
        origin.script(f"{path}-0", {"headers": [FRESH], "body": "zero"})
        a.get(f"{path}-0", headers=HOST)
        _wait_stored(prefix, f"{path}-0", port)
        assert b.get(f"{path}-0", headers=HOST).header("X-Cache-Status") == "HIT"
        stop_redis(redis_proc)
        for n in range(1, 11):
            target = f"{path}-{n}"
            origin.script(target, {"headers": [FRESH], "body": f"body {n}"})
            for proxy in (a, b):
                response = proxy.get(target, headers=HOST)
                assert (response.status, response.body) == (200, f"body {n}".encode())
            assert origin.count(target) == 2  # no sharing while Redis is down
        for proxy in (a, b):
            assert _metric(proxy, "cachet_shared_breaker_opened_total") >= 1
            assert _metric(proxy, "cachet_shared_skipped_total") > 0
    with private_redis(port):
        later = f"{path}-later"
        origin.script(later, {"headers": [FRESH], "body": "back"})
        deadline = time.monotonic() + 20  # the breaker probes again after its cool-down
        while True:
            a.get(f"{later}-probe-{time.monotonic()}", headers=HOST)
            if _metric(a, "cachet_shared_breaker_state") == 0:
                break
            assert time.monotonic() < deadline, "the breaker never closed again"
            time.sleep(0.2)
        a.get(later, headers=HOST)
        _wait_stored(prefix, later, port)
        deadline = time.monotonic() + 20
        while _metric(b, "cachet_shared_breaker_state") != 0:
            b.get(f"{later}-probe-{time.monotonic()}", headers=HOST)
            assert time.monotonic() < deadline, "the breaker never closed again"
            time.sleep(0.2)
        assert b.get(later, headers=HOST).header("X-Cache-Status") == "HIT"
        assert origin.count(later) == 1


class _SilentServer:
    """Accepts connections and never answers: a Redis that hangs."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.held: list[socket.socket] = []
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.held.append(conn)

    def close(self) -> None:
        self.sock.close()
        for conn in self.held:
            conn.close()


def test_a_silent_redis_costs_a_few_timeouts_then_is_skipped(
    origin: Origin, proxy_factory: ProxyFactory, path: str
) -> None:
    silent = _SilentServer()
    try:
        url = f"redis://127.0.0.1:{silent.port}/0"
        a = proxy_factory(origin.url, *_flags(url, unique_prefix(), "--shared-timeout-ms", "100"))
        for n in range(20):
            target = f"{path}-{n}"
            origin.script(target, {"headers": [FRESH], "body": f"body {n}"})
            response = a.get(target, headers=HOST)
            assert (response.status, response.body) == (200, f"body {n}".encode())
        timeouts = _metric(a, 'cachet_shared_errors_total{kind="timeout"}')
        # Three failures in a row open the breaker; while it is open (1 s, then longer after
        # each failed probe) lookups are skipped, not waited for.
        assert 3 <= timeouts < 20
        assert _metric(a, "cachet_shared_skipped_total") > 0
        assert _metric(a, "cachet_shared_breaker_opened_total") >= 1
    finally:
        silent.close()
