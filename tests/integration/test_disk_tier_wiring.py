"""The disk tier behind `cachet proxy` (issue 3): write-through, a restart (SIGKILL included)
serves what was cached before from disk, corrupt entries are dropped and never served."""

from __future__ import annotations

import hashlib
import json
import re
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tests.integration.conftest import Origin, Proxy, http_request, start_proxy, stop_process

FRESH = ["Cache-Control", "max-age=300"]
HOST = {"Host": "cache.test"}  # the key names the Host; the proxy's port changes per start


def _metric(proxy: Proxy, name: str) -> float:
    text = proxy.admin("/metrics").body.decode()
    found = re.search(rf"^{name} ([0-9.e+]+)$", text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


def _wait_on_disk(proxy: Proxy, entries: int) -> None:
    deadline = time.monotonic() + 10
    while _metric(proxy, "cachet_disk_entries") < entries:
        assert time.monotonic() < deadline, "write-through never reached the disk"
        time.sleep(0.02)


def _kill(proxy: Proxy) -> None:
    proxy.proc.send_signal(signal.SIGKILL)
    stop_process(proxy.proc)


def test_restart_after_sigkill_serves_the_cache_from_disk(
    origin: Origin, tmp_path: Path, path: str
) -> None:
    origin.script(path, {"headers": [FRESH, ["Content-Type", "text/plain"]], "body": "kept"})
    first = start_proxy(origin.url, tmp_path / "c")
    try:
        assert first.get(path, headers=HOST).header("X-Cache-Status") == "MISS"
        _wait_on_disk(first, 1)
    finally:
        _kill(first)
    second = start_proxy(origin.url, tmp_path / "c")
    try:
        response = second.get(path, headers=HOST)
        assert (response.status, response.body) == (200, b"kept")
        assert response.header("X-Cache-Status") == "HIT"
        assert origin.count(path) == 1
        receipt = second.admin(f"/_cachet/receipts/{response.header('X-Request-ID')}")
        record = json.loads(receipt.body)["record"]
        assert (record["cache"], record["tier"], record["bytes"]) == ("hit", "disk", 4)
        assert _metric(second, "cachet_disk_hits_total") == 1
        again = second.get(path, headers=HOST)  # promoted: now a memory hit
        assert again.header("X-Cache-Status") == "HIT"
        receipt = second.admin(f"/_cachet/receipts/{again.header('X-Request-ID')}")
        assert json.loads(receipt.body)["record"]["tier"] == "memory"
    finally:
        second.stop()


def test_clean_restart_keeps_ranges_and_variants_servable(
    origin: Origin, tmp_path: Path, path: str
) -> None:
    origin.script(path, {"headers": [FRESH], "body": "0123456789"})
    first = start_proxy(origin.url, tmp_path / "c")
    try:
        first.get(path, headers=HOST)
        _wait_on_disk(first, 1)
    finally:
        assert first.stop() == 0
    second = start_proxy(origin.url, tmp_path / "c")
    try:
        response = second.get(path, headers={**HOST, "Range": "bytes=2-4"})
        assert (response.status, response.body) == (206, b"234")
        assert origin.count(path) == 1
    finally:
        second.stop()


def test_corrupt_entry_is_dropped_and_never_served(
    origin: Origin, tmp_path: Path, path: str
) -> None:
    origin.script(path, {"headers": [FRESH], "body": "A" * 1000})
    first = start_proxy(origin.url, tmp_path / "c")
    try:
        first.get(path, headers=HOST)
        _wait_on_disk(first, 1)
    finally:
        _kill(first)
    files = [p for p in (tmp_path / "c" / "objects").rglob("*") if p.is_file()]
    files = [p for p in files if re.fullmatch(r"[0-9a-f]{64}", p.name)]
    assert len(files) == 1
    data = bytearray(files[0].read_bytes())
    data[-100] ^= 0x01  # a bit flip inside the body
    files[0].write_bytes(bytes(data))
    second = start_proxy(origin.url, tmp_path / "c")
    try:
        response = second.get(path, headers=HOST)
        assert response.body == b"A" * 1000
        assert response.header("X-Cache-Status") == "MISS"
        assert origin.count(path) == 2
        assert _metric(second, "cachet_disk_corrupt_dropped_total") == 1
    finally:
        second.stop()


def test_invalidation_removes_the_disk_copy_rfc9111_s4_4(
    origin: Origin, tmp_path: Path, path: str
) -> None:
    origin.script(path, {"headers": [FRESH], "body": "v1"})
    first = start_proxy(origin.url, tmp_path / "c")
    try:
        first.get(path, headers=HOST)
        _wait_on_disk(first, 1)
        assert first.request("POST", path, body=b"x", headers=HOST).status == 200
        assert _metric(first, "cachet_disk_entries") == 0
    finally:
        _kill(first)
    second = start_proxy(origin.url, tmp_path / "c")
    try:
        assert second.get(path, headers=HOST).header("X-Cache-Status") == "MISS"
    finally:
        second.stop()


def test_disk_zero_turns_the_disk_tier_off(origin: Origin, tmp_path: Path, path: str) -> None:
    origin.script(path, {"headers": [FRESH], "body": "mem"})
    first = start_proxy(origin.url, tmp_path / "c", "--disk", "0")
    try:
        first.get(path, headers=HOST)
        assert "cachet_disk_entries" not in first.admin("/metrics").body.decode()
    finally:
        assert first.stop() == 0
    assert not (tmp_path / "c" / "objects").exists()
    second = start_proxy(origin.url, tmp_path / "c", "--disk", "0")
    try:
        assert second.get(path, headers=HOST).header("X-Cache-Status") == "MISS"
    finally:
        second.stop()


def test_disk_hit_after_restart_is_attributed_again_with_one_x_provenance(
    origin: Origin, tmp_path: Path, path: str
) -> None:
    body = f"creator bytes {path}".encode()
    content_id = "sha256:" + hashlib.sha256(body).hexdigest()
    claim = [
        ["X-Content-Id", content_id],
        ["X-Creator-Id", "alice"],
        ["X-Manifest-Id", "sha256:" + "ef" * 32],
    ]
    origin.script(path, {"headers": [FRESH, *claim], "body": body.decode()})
    first = start_proxy(origin.url, tmp_path / "c", "--origin-trusted")
    try:
        first.get(path, headers=HOST)
        _wait_on_disk(first, 1)
    finally:
        _kill(first)
    second = start_proxy(origin.url, tmp_path / "c", "--origin-trusted")
    try:
        response = second.get(path, headers=HOST)
        assert response.header("X-Cache-Status") == "HIT"
        assert len(response.all("X-Provenance")) == 1
        assert content_id in (response.header("X-Provenance") or "")
        receipt = second.admin(f"/_cachet/receipts/{response.header('X-Request-ID')}")
        record = json.loads(receipt.body)["record"]
        assert (record["tier"], record["content_id"], record["creator"]) == (
            "disk",
            content_id,
            "alice",
        )
    finally:
        second.stop()


def test_purge_by_surrogate_key_after_restart_finds_disk_only_entries(
    origin: Origin, tmp_path: Path, path: str
) -> None:
    origin.script(path, {"headers": [FRESH, ["Surrogate-Key", "restart-tag other"]], "body": "t"})
    first = start_proxy(origin.url, tmp_path / "c", "--purge-token", "tok")
    try:
        first.get(path, headers=HOST)
        _wait_on_disk(first, 1)
    finally:
        _kill(first)
    second = start_proxy(origin.url, tmp_path / "c", "--purge-token", "tok")
    try:
        body = json.dumps({"surrogate_keys": ["restart-tag"]}).encode()
        headers = {"Authorization": "Bearer tok"}
        deadline = time.monotonic() + 10
        while True:  # the disk's surrogate keys are indexed in the background after start
            answer = http_request(
                second.admin_port, "POST", "/_cachet/purge", headers=headers, body=body
            )
            assert answer.status == 200
            if json.loads(answer.body)["purged"] == 1:
                break
            assert time.monotonic() < deadline, "disk entries never indexed by surrogate key"
        assert second.get(path, headers=HOST).header("X-Cache-Status") == "MISS"
    finally:
        second.stop()


def test_concurrent_misses_of_one_disk_entry_share_one_read(
    origin: Origin, tmp_path: Path, path: str
) -> None:
    origin.script(path, {"headers": [FRESH], "body_size": 4 * 1024 * 1024})
    first = start_proxy(origin.url, tmp_path / "c")
    try:
        first.get(path, headers=HOST)
        _wait_on_disk(first, 1)
    finally:
        _kill(first)
    second = start_proxy(origin.url, tmp_path / "c")
    try:
        with ThreadPoolExecutor(max_workers=12) as pool:
            answers = list(pool.map(lambda _: second.get(path, headers=HOST), range(12)))
        assert all(a.header("X-Cache-Status") == "HIT" for a in answers)
        assert all(len(a.body) == 4 * 1024 * 1024 for a in answers)
        assert _metric(second, "cachet_disk_reads_total") == 1
        assert origin.count(path) == 1
    finally:
        second.stop()
