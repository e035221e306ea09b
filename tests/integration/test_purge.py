"""Purge on the admin listener (issue 3, docs/purge.md): bearer token, by URL, prefix,
surrogate key and content id, hard and soft, with clear statuses for bad requests."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator
from typing import Any

import pytest

from tests.integration.conftest import Origin, Proxy, Response, http_request, start_proxy

TOKEN = "s3cret-purge-token-for-tests"
FRESH = ["Cache-Control", "max-age=300"]


@pytest.fixture(scope="module")
def purging(origin: Origin, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proxy]:
    proxy = start_proxy(
        origin.url,
        tmp_path_factory.mktemp("purging"),
        "--purge-token",
        TOKEN,
        "--origin-trusted",
    )
    yield proxy
    proxy.stop()


def _purge(proxy: Proxy, body: Any, token: str | None = TOKEN) -> Response:
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return http_request(proxy.admin_port, "POST", "/_cachet/purge", headers=headers, body=data)


def _url(proxy: Proxy, path: str) -> str:
    return f"http://127.0.0.1:{proxy.port}{path}"


def _status(proxy: Proxy, path: str) -> str | None:
    return proxy.get(path).header("X-Cache-Status")


def _metric(proxy: Proxy, pattern: str) -> float:
    text = proxy.admin("/metrics").body.decode()
    found = re.search(rf"^{pattern} ([0-9.e+]+)$", text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


def test_purge_is_refused_when_no_token_is_configured(proxy: Proxy) -> None:
    response = _purge(proxy, {"urls": ["http://x/"]})
    assert response.status == 403
    assert "purge_token" in json.loads(response.body)["error"]


def test_missing_or_wrong_token_is_401_with_a_bearer_challenge_rfc6750_s3(
    purging: Proxy,
) -> None:
    for token in (None, "wrong", TOKEN + "x", ""):
        response = _purge(purging, {"urls": ["http://x/"]}, token)
        assert response.status == 401, token
        assert (response.header("WWW-Authenticate") or "").startswith("Bearer")
    basic = http_request(
        purging.admin_port,
        "POST",
        "/_cachet/purge",
        headers={"Authorization": f"Basic {TOKEN}"},
        body=b"{}",
    )
    assert basic.status == 401


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"not json", "not JSON"),
        (b"[1, 2]", "JSON object"),
        ({}, "nothing to purge"),
        ({"urls": "http://x/"}, "list of strings"),
        ({"urls": [1]}, "non-empty strings"),
        ({"urls": ["/relative"]}, "absolute"),
        ({"prefixes": ["ftp://x/"]}, "absolute"),
        ({"urls": ["http://x/"], "mode": "gentle"}, "mode"),
        ({"urls": ["http://x/"], "extra": 1}, "unknown field"),
        ({"content_ids": ["md5:abc"]}, "sha256"),
        ({"prefixes": [f"http://x/{i}" for i in range(1001)]}, "too many"),
        ({"urls": ["http://x/"] * 600, "prefixes": ["http://x/"] * 600}, "too many"),
    ],
)
def test_malformed_purge_bodies_are_400_with_a_reason(
    purging: Proxy, body: Any, message: str
) -> None:
    response = _purge(purging, body)
    assert response.status == 400
    assert message in json.loads(response.body)["error"]


def test_oversized_purge_body_is_413(purging: Proxy) -> None:
    response = _purge(purging, b'{"urls": ["' + b"a" * (2 * 1024 * 1024) + b'"]}')
    assert response.status == 413


def test_hard_purge_by_url(purging: Proxy, origin: Origin, path: str) -> None:
    origin.script(path, {"headers": [FRESH], "body": "one"})
    purging.get(path)
    assert _status(purging, path) == "HIT"
    response = _purge(purging, {"urls": [_url(purging, path)]})
    assert response.status == 200
    assert json.loads(response.body) == {"mode": "hard", "purged": 1}
    assert _status(purging, path) == "MISS"
    assert _metric(purging, 'cachet_purges_total{kind="urls",mode="hard"}') >= 1


def test_hard_purge_by_prefix(purging: Proxy, origin: Origin, path: str) -> None:
    for sub in ("/a", "/b", "-other"):
        origin.script(path + sub, {"headers": [FRESH], "body": sub})
        purging.get(path + sub)
    response = _purge(purging, {"prefixes": [_url(purging, path + "/")]})
    assert json.loads(response.body)["purged"] == 2
    assert _status(purging, path + "/a") == "MISS"
    assert _status(purging, path + "/b") == "MISS"
    assert _status(purging, path + "-other") == "HIT"


def test_purge_by_surrogate_key_and_cache_tag_which_clients_never_see(
    purging: Proxy, origin: Origin, path: str
) -> None:
    tag = "tag-" + hashlib.sha256(path.encode()).hexdigest()[:8]
    origin.script(path + "/s", {"headers": [FRESH, ["Surrogate-Key", f"k1 {tag} k2"]], "body": "s"})
    origin.script(path + "/c", {"headers": [FRESH, ["Cache-Tag", f"c1, {tag}"]], "body": "c"})
    origin.script(path + "/n", {"headers": [FRESH, ["Cache-Tag", "other"]], "body": "n"})
    for sub in ("/s", "/c", "/n"):
        first = purging.get(path + sub)
        assert first.header("Surrogate-Key") is None
        assert first.header("Cache-Tag") is None
        hit = purging.get(path + sub)
        assert hit.header("X-Cache-Status") == "HIT"
        assert hit.header("Surrogate-Key") is None
        assert hit.header("Cache-Tag") is None
    response = _purge(purging, {"surrogate_keys": [tag]})
    assert json.loads(response.body)["purged"] == 2
    assert _status(purging, path + "/s") == "MISS"
    assert _status(purging, path + "/c") == "MISS"
    assert _status(purging, path + "/n") == "HIT"


def test_purge_by_content_id(purging: Proxy, origin: Origin, path: str) -> None:
    body = f"content of {path}".encode()
    content_id = "sha256:" + hashlib.sha256(body).hexdigest()
    claim = [
        ["X-Content-Id", content_id],
        ["X-Creator-Id", "alice"],
        ["X-Manifest-Id", "sha256:" + "ab" * 32],
    ]
    origin.script(path, {"headers": [FRESH, *claim], "body": body.decode()})
    purging.get(path)
    assert _status(purging, path) == "HIT"
    response = _purge(purging, {"content_ids": [content_id]})
    assert json.loads(response.body)["purged"] == 1
    assert _status(purging, path) == "MISS"


def test_soft_purge_revalidates_before_serving_fresh_rfc9111_s4_3(
    purging: Proxy, origin: Origin, path: str
) -> None:
    origin.script(
        path,
        {"headers": [FRESH, ["ETag", '"e1"']], "body": "soft"},
        {"status": 304, "reason": "Not Modified", "headers": [FRESH, ["ETag", '"e1"']]},
    )
    purging.get(path)
    response = _purge(purging, {"urls": [_url(purging, path)], "mode": "soft"})
    assert json.loads(response.body) == {"mode": "soft", "purged": 1}
    again = purging.get(path)
    assert (again.status, again.body) == (200, b"soft")
    assert again.header("X-Cache-Status") == "REVALIDATED"
    sent = origin.requests(path)
    assert len(sent) == 2
    assert any(name.lower() == "if-none-match" for name, _ in sent[1]["headers"])
    assert _status(purging, path) == "HIT"  # refreshed: fresh again


def test_soft_purged_entry_still_serves_stale_if_error_rfc5861_s4(
    purging: Proxy, origin: Origin, path: str
) -> None:
    origin.script(
        path,
        {"headers": [["Cache-Control", "max-age=300, stale-if-error=600"]], "body": "backup"},
        {"status": 500, "body": "down"},
    )
    purging.get(path)
    _purge(purging, {"prefixes": [_url(purging, path)], "mode": "soft"})
    response = purging.get(path)
    assert (response.status, response.body) == (200, b"backup")
    assert origin.count(path) == 2


def test_purges_are_logged_with_peer_and_token_id_never_the_token(
    purging: Proxy, origin: Origin, path: str
) -> None:
    _purge(purging, {"urls": [_url(purging, path)]})
    _purge(purging, {"urls": [_url(purging, path)]}, "wrong")
    log = purging.log.read_text()
    assert "peer=127.0.0.1" in log
    assert "token_id=" in log
    assert TOKEN not in log
    assert _metric(purging, 'cachet_purges_refused_total{reason="unauthorized"}') >= 1
