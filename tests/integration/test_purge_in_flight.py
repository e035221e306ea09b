"""A purge that arrives while the purged response is still on its way from the origin is not
undone when the response lands (docs/purge.md): hard, it is not stored; soft, it is stored
stale and revalidated by the next request (RFC 9111 §4.3)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.integration.conftest import Origin, Proxy, Response, http_request, start_proxy

TOKEN = "in-flight-purge-token"
HOST = {"Host": "inflight.test"}
FRESH = ["Cache-Control", "max-age=300"]


@pytest.fixture(scope="module")
def purging(origin: Origin, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proxy]:
    proxy = start_proxy(origin.url, tmp_path_factory.mktemp("in-flight"), "--purge-token", TOKEN)
    yield proxy
    proxy.stop()


def _purge(proxy: Proxy, document: Mapping[str, object]) -> Response:
    return http_request(
        proxy.admin_port,
        "POST",
        "/_cachet/purge",
        headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
        body=json.dumps(document).encode(),
    )


def _purge_while_filling(
    proxy: Proxy, origin: Origin, path: str, document: Mapping[str, object]
) -> Response:
    """GET ``path`` (the origin answers after a delay), purge once the origin has the request,
    and return the GET's answer."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        pending = pool.submit(proxy.get, path, HOST)
        origin.wait_for_count(path, 1)  # the request is on its way: nothing is cached yet
        answer = _purge(proxy, document)
        assert answer.status == 200
        return pending.result()


def _by_url(path: str) -> dict[str, object]:
    return {"urls": [f"http://inflight.test{path}"]}


def _by_prefix(path: str) -> dict[str, object]:
    return {"prefixes": [f"http://inflight.test{path[:-4]}"]}


def _by_surrogate_key(path: str) -> dict[str, object]:
    return {"surrogate_keys": [f"tag{path[-8:]}"]}


@pytest.mark.parametrize(
    "target", [_by_url, _by_prefix, _by_surrogate_key], ids=["url", "prefix", "surrogate-key"]
)
def test_hard_purge_during_the_fill_keeps_it_out_of_the_cache(
    purging: Proxy, origin: Origin, path: str, target: Callable[[str], dict[str, object]]
) -> None:
    tag = ["Surrogate-Key", f"tag{path[-8:]}"]
    origin.script(path, {"headers": [FRESH, tag], "body": "old", "delay_s": 0.5})
    first = _purge_while_filling(purging, origin, path, target(path))
    assert (first.status, first.body) == (200, b"old")  # asked before the purge: answered
    second = purging.get(path, headers=HOST)
    assert second.header("X-Cache-Status") == "MISS"
    assert origin.count(path) == 2


def test_soft_purge_during_the_fill_stores_it_stale_rfc9111_s4_3(
    purging: Proxy, origin: Origin, path: str
) -> None:
    headers = [FRESH, ["ETag", '"e1"']]
    origin.script(
        path,
        {"headers": headers, "body": "soft", "delay_s": 0.5},
        {"status": 304, "reason": "Not Modified", "headers": headers},
    )
    document = {"urls": [f"http://inflight.test{path}"], "mode": "soft"}
    first = _purge_while_filling(purging, origin, path, document)
    assert (first.status, first.body) == (200, b"soft")
    second = purging.get(path, headers=HOST)
    assert (second.status, second.body) == (200, b"soft")
    assert second.header("X-Cache-Status") == "REVALIDATED"
    sent = origin.requests(path)
    assert len(sent) == 2
    assert ["If-None-Match", '"e1"'] in [list(h) for h in sent[1]["headers"]]


def test_a_purge_before_the_request_does_not_stop_it_being_cached(
    purging: Proxy, origin: Origin, path: str
) -> None:
    origin.script(path, {"headers": [FRESH], "body": "later"})
    assert _purge(purging, {"urls": [f"http://inflight.test{path}"]}).status == 200
    assert purging.get(path, headers=HOST).header("X-Cache-Status") == "MISS"
    assert purging.get(path, headers=HOST).header("X-Cache-Status") == "HIT"
    assert origin.count(path) == 1
