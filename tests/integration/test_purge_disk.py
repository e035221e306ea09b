"""Purge by content id reaches objects that are only on disk after a restart, and they stay
purged across the next restart (issue 3, docs/purge.md)."""

from __future__ import annotations

import hashlib
import json
import re
import signal
import time
from pathlib import Path

from tests.integration.conftest import (
    Origin,
    Proxy,
    Response,
    http_request,
    start_proxy,
    stop_process,
)

TOKEN = "disk-purge-token"
HOST = {"Host": "purge.test"}  # the key names the Host; the proxy's port changes per start
FLAGS = ("--purge-token", TOKEN, "--origin-trusted")


def _claimed(path: str, origin: Origin, *, then_304: bool = False) -> str:
    """Script ``path`` with a body whose content id a trusted origin claims (then, if asked,
    a 304 for the revalidation); return the id."""
    body = f"creator content at {path}"
    content_id = "sha256:" + hashlib.sha256(body.encode()).hexdigest()
    headers = [
        ["Cache-Control", "max-age=300"],
        ["ETag", '"v1"'],
        ["X-Content-Id", content_id],
        ["X-Creator-Id", "alice"],
        ["X-Manifest-Id", "sha256:" + "cd" * 32],
    ]
    not_modified = {"status": 304, "reason": "Not Modified", "headers": headers}
    origin.script(path, {"headers": headers, "body": body}, *([not_modified] if then_304 else []))
    return content_id


def _purge(proxy: Proxy, document: dict[str, object]) -> Response:
    return http_request(
        proxy.admin_port,
        "POST",
        "/_cachet/purge",
        headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
        body=json.dumps(document).encode(),
    )


def _disk_entries(proxy: Proxy) -> float:
    text = proxy.admin("/metrics").body.decode()
    found = re.search(r"^cachet_disk_entries ([0-9.e+]+)$", text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


def _cache_then_kill(origin: Origin, cache_dir: Path, path: str) -> None:
    first = start_proxy(origin.url, cache_dir, *FLAGS)
    try:
        assert first.get(path, headers=HOST).header("X-Cache-Status") == "MISS"
        deadline = time.monotonic() + 10
        while _disk_entries(first) < 1:  # write-through is asynchronous
            assert time.monotonic() < deadline, "write-through never reached the disk"
            time.sleep(0.02)
    finally:
        first.proc.send_signal(signal.SIGKILL)
        stop_process(first.proc)


def test_hard_purge_by_content_id_of_a_disk_only_object(
    origin: Origin, tmp_path: Path, path: str
) -> None:
    content_id = _claimed(path, origin)
    _cache_then_kill(origin, tmp_path / "c", path)
    second = start_proxy(origin.url, tmp_path / "c", *FLAGS)
    try:
        # Nothing was requested since the restart: the object is only on disk.
        answer = _purge(second, {"content_ids": [content_id]})
        assert answer.status == 200
        assert json.loads(answer.body) == {"mode": "hard", "purged": 1}
    finally:
        second.proc.send_signal(signal.SIGKILL)  # no clean close: the purge must already hold
        stop_process(second.proc)
    third = start_proxy(origin.url, tmp_path / "c", *FLAGS)
    try:
        response = third.get(path, headers=HOST)
        assert response.status == 200
        assert response.header("X-Cache-Status") == "MISS"
        assert origin.count(path) == 2
    finally:
        third.stop()


def test_soft_purge_by_content_id_of_a_disk_only_object_revalidates_rfc9111_s4_3(
    origin: Origin, tmp_path: Path, path: str
) -> None:
    content_id = _claimed(path, origin, then_304=True)
    _cache_then_kill(origin, tmp_path / "c", path)
    second = start_proxy(origin.url, tmp_path / "c", *FLAGS)
    try:
        answer = _purge(second, {"content_ids": [content_id], "mode": "soft"})
        assert json.loads(answer.body) == {"mode": "soft", "purged": 1}
    finally:
        second.proc.send_signal(signal.SIGKILL)
        stop_process(second.proc)
    third = start_proxy(origin.url, tmp_path / "c", *FLAGS)
    try:
        response = third.get(path, headers=HOST)
        assert response.status == 200
        assert response.body == f"creator content at {path}".encode()
        # Still stale after the restart: revalidated with the origin (a conditional request).
        assert response.header("X-Cache-Status") == "REVALIDATED"
        sent = origin.requests(path)
        assert len(sent) == 2
        assert ["If-None-Match", '"v1"'] in [list(h) for h in sent[1]["headers"]]
    finally:
        third.stop()


def test_purge_by_an_unknown_content_id_after_a_restart_purges_nothing(
    origin: Origin, tmp_path: Path, path: str
) -> None:
    _claimed(path, origin)
    _cache_then_kill(origin, tmp_path / "c", path)
    second = start_proxy(origin.url, tmp_path / "c", *FLAGS)
    try:
        answer = _purge(second, {"content_ids": ["sha256:" + "0" * 64]})
        assert json.loads(answer.body) == {"mode": "hard", "purged": 0}
        response = second.get(path, headers=HOST)
        assert response.header("X-Cache-Status") == "HIT"
        assert origin.count(path) == 1
    finally:
        second.stop()
