"""`cachet proxy --workers 2` with its one shared disk folder (issue 3, "Processes and shared
tier": N processes sharing "the disk tier without corrupting it"; docs/design/disk-tier.md,
"Sharing one folder"; docs/design/workers.md).

Real processes on 127.0.0.1; every request opens its own connection, so the kernel spreads them
over both workers.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import signal
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from proxy.cache.tiers.disk import DiskTier, name_for
from tests.integration.conftest import Origin, Proxy, Response, start_proxy
from tests.integration.test_records_process import wait_gone
from tests.integration.test_workers import (
    FRESH,
    REQUESTS,
    TOKEN,
    entry_file,
    get_many,
    health,
    per_worker,
    purge,
    value,
    wait_for,
    wait_stored,
    worker_pids,
)

pytestmark = pytest.mark.integration
KiB = 1024


@pytest.fixture
def workers(origin: Origin, tmp_path: Path) -> Iterator[Proxy]:
    proxy = start_proxy(origin.url, tmp_path, "--workers", "2", "--purge-token", TOKEN)
    yield proxy
    proxy.stop()


def entry_files(cache_dir: Path) -> list[Path]:
    objects = cache_dir / "objects"
    return [p for p in objects.rglob("*") if len(p.name) == 64 and p.is_file()]


def temp_files(cache_dir: Path) -> list[Path]:
    return list((cache_dir / "objects").rglob("*.tmp-*"))


def restart_workers(proxy: Proxy) -> None:
    """SIGKILL every worker; wait until the supervisor has both serving again."""
    old = worker_pids(proxy)
    for pid in old:
        os.kill(pid, signal.SIGKILL)
    for pid in old:
        wait_gone(pid)

    def both_back() -> bool:
        status = health(proxy)
        pids = [w["pid"] for w in status["workers"]]
        return status["status"] == "ok" and not set(pids) & {*old, None}

    wait_for(both_back, "the workers did not come back")


def test_an_object_one_worker_stored_is_a_hit_on_every_worker(
    workers: Proxy, origin: Origin, tmp_path: Path
) -> None:
    """N workers don't each fetch the same cold object once the first has stored it."""
    origin.script("/sd-hit", {"headers": [FRESH], "body": "once"})
    first = get_many(workers, "/sd-hit", 1)[0]
    assert first.header("X-Cache-Status") == "MISS"
    wait_stored(workers, tmp_path, "/sd-hit")
    responses = get_many(workers, "/sd-hit")
    assert {(r.body, r.header("X-Cache-Status")) for r in responses} == {(b"once", "HIT")}
    assert origin.count("/sd-hit") == 1
    answered = per_worker(workers, "cachet_requests")
    assert set(answered) == {"0", "1"}  # both workers answered, both from the cache
    fetched = per_worker(workers, "cachet_origin_requests")
    other = next(w for w in ("0", "1") if fetched.get(w, 0) == 0)
    assert per_worker(workers, "cachet_disk_hits")[other] == 1  # read, then in memory


def test_purges_by_url_and_surrogate_key_reach_the_shared_folder_and_stay_after_restart(
    origin: Origin, tmp_path: Path
) -> None:
    """docs/purge.md: a hard purge through the one admin listener removes the object from every
    worker and from the one folder, whoever wrote it; it does not come back after a restart."""
    host = {"Host": "purge.test"}  # one cache key across both proxies' ports
    paths = {"/sd-url": "a", "/sd-tag": "grp"}
    proxy = start_proxy(origin.url, tmp_path, "--workers", "2", "--purge-token", TOKEN)
    try:
        for path, tag in paths.items():
            origin.script(
                path,
                {"headers": [FRESH, ["Surrogate-Key", tag]], "body": "old"},
                {"headers": [FRESH], "body": "new"},
            )
            assert proxy.get(path, headers=host).status == 200
            wait_for(purge_test_entry(tmp_path, path).exists, f"{path} never stored")
            served = [proxy.get(path, headers=host) for _ in range(REQUESTS)]
            assert {(r.body, r.header("X-Cache-Status")) for r in served} == {(b"old", "HIT")}
        assert set(per_worker(proxy, "cachet_requests")) == {"0", "1"}
        assert purge(proxy, {"urls": ["http://purge.test/sd-url"]}).status == 200
        assert purge(proxy, {"surrogate_keys": ["grp"]}).status == 200
        for path in paths:
            assert not purge_test_entry(tmp_path, path).exists()
    finally:
        assert proxy.stop() == 0
    again = start_proxy(origin.url, tmp_path, "--workers", "2", "--purge-token", TOKEN)
    try:
        for path in paths:
            first = again.get(path, headers=host)
            assert (first.body, first.header("X-Cache-Status")) == (b"new", "MISS")
            assert origin.count(path) == 2
    finally:
        again.stop()


def purge_test_entry(cache_dir: Path, path: str) -> Path:
    name = name_for(f"http://purge.test{path}")
    return cache_dir / "objects" / name[0] / name[1:3] / name


def test_a_surrogate_purge_finds_an_entry_whose_writer_was_killed(
    workers: Proxy, origin: Origin, tmp_path: Path
) -> None:
    """The worker that stored the entry is SIGKILLed (its memory and purge index are gone)
    before the purge: the folder's owner still knows the entry's surrogate key, from the
    writer's journal or, if the writer was the owner, from the new owner's scan."""
    origin.script(
        "/sd-orphan",
        {"headers": [FRESH, ["Surrogate-Key", "orphan"]], "body": "old"},
        {"headers": [FRESH], "body": "new"},
    )
    get_many(workers, "/sd-orphan", 1)
    wait_stored(workers, tmp_path, "/sd-orphan")
    # The owner has taken the file into its index (its upkeep runs every second).
    wait_for(lambda: value(workers, "cachet_disk_entries") == 1, "the owner never indexed it")
    fetched = per_worker(workers, "cachet_origin_requests")
    writer = next(int(w) for w, n in fetched.items() if n == 1)
    pid = worker_pids(workers)[writer]
    os.kill(pid, signal.SIGKILL)
    wait_gone(pid)
    wait_for(lambda: health(workers)["status"] == "ok", "the writer did not come back")
    answer = purge(workers, {"surrogate_keys": ["orphan"]})
    assert answer.status == 200 and json.loads(answer.body)["purged"] >= 1
    assert not entry_file(workers, tmp_path, "/sd-orphan").exists()
    assert {r.body for r in get_many(workers, "/sd-orphan", 10)} <= {b"new"}


def test_workers_killed_mid_write_leave_only_whole_objects(
    workers: Proxy, origin: Origin, tmp_path: Path
) -> None:
    """Issue 3: "SIGKILL at any moment, then restart: the cache is consistent and serves only
    whole, correct objects". Both workers are killed while they store large bodies."""
    paths = [f"/sd-crash-{i}" for i in range(24)]
    # Each object has its own length and names itself in a field: a torn, mixed or short
    # object cannot pass for whole.
    bodies = {path: b"x" * (512 * KiB + i) for i, path in enumerate(paths)}
    for path in paths:
        spec = {"headers": [FRESH, ["X-Which", path]], "body_size": len(bodies[path])}
        origin.script(path, spec)
    answers: list[tuple[str, Response]] = []

    def fetch(path: str) -> None:
        try:
            answers.append((path, workers.get(path)))
        except (OSError, http.client.HTTPException):
            pass  # its worker was killed under it: cut short, never a whole-looking 200

    threads = [threading.Thread(target=fetch, args=(path,)) for path in paths]
    for thread in threads:
        thread.start()
    wait_for(lambda: len(entry_files(tmp_path)) >= 1, "nothing reached the disk")
    restart_workers(workers)  # some fetches and writes are still in flight
    for thread in threads:
        thread.join()
    for path, response in answers:
        if response.status == 200:
            assert (response.header("X-Which"), response.body) == (path, bodies[path])

    served = {path: workers.get(path) for path in paths}
    for path, response in served.items():
        assert response.status == 200, path
        assert (response.header("X-Which"), response.body) == (path, bodies[path])
    hits = [p for p, r in served.items() if r.header("X-Cache-Status") == "HIT"]
    assert hits, "no object survived on disk; the test proved nothing"
    assert workers.stop() == 0
    assert not temp_files(tmp_path)  # the dead writers' temp files were cleared at restart

    tier = DiskTier(tmp_path / "objects", 1 << 34, 1 << 30)
    tier.open()
    for key in list(tier.keys()):
        variants = asyncio.run(tier.get(key))
        assert variants is not None and variants[0].body == bodies[key.split(str(workers.port))[1]]
    assert tier.corrupt_dropped == 0


def test_two_workers_filling_the_folder_keep_it_within_its_budget(
    origin: Origin, tmp_path: Path
) -> None:
    """The byte budget holds for the folder as a whole (its owner evicts by last use across
    every file, whoever wrote it), not per worker."""
    budget = 256 * KiB
    proxy = start_proxy(origin.url, tmp_path, "--workers", "2", "--disk", f"{budget}")
    try:
        paths = [f"/sd-fill-{i}" for i in range(REQUESTS)]
        for path in paths:
            origin.script(path, {"headers": [FRESH], "body_size": 16 * KiB})
        for path in paths:
            assert proxy.get(path).status == 200
        stored = per_worker(proxy, "cachet_origin_requests")
        assert set(stored) == {"0", "1"} and all(stored.values())  # both wrote to the folder

        def settled() -> bool:
            files = entry_files(tmp_path)
            indexed = value(proxy, "cachet_disk_entries")  # the owner's, for the whole folder
            return indexed == len(files) and sum(f.stat().st_size for f in files) <= budget

        wait_for(settled, "the folder did not settle within its budget")
        assert value(proxy, "cachet_disk_evictions") > 0
        assert sum(f.stat().st_size for f in entry_files(tmp_path)) <= budget
        assert value(proxy, "cachet_disk_bytes") <= budget
        # Files evicted under the workers are misses, never errors: every object is served.
        for path in paths:
            response = proxy.get(path)
            assert (response.status, len(response.body)) == (200, 16 * KiB)
    finally:
        proxy.stop()


def test_a_soft_purge_of_an_entry_only_on_disk_survives_a_restart_rfc9111_s4_3(
    origin: Origin, tmp_path: Path
) -> None:
    """docs/purge.md: a soft purge marks the entry stale on disk before it answers, so after a
    restart it is revalidated (RFC 9111 §4.3) before it is served fresh again, whichever
    worker answers."""
    etag = ["ETag", '"e1"']
    origin.script(
        "/sd-soft",
        {"headers": [FRESH, etag], "body": "soft"},
        {"status": 304, "reason": "Not Modified", "headers": [FRESH, etag]},
    )
    host = {"Host": "soft.test"}  # one cache key across the three proxies' ports
    name = name_for("http://soft.test/sd-soft")
    entry = tmp_path / "objects" / name[0] / name[1:3] / name
    first = start_proxy(origin.url, tmp_path, "--workers", "2", "--purge-token", TOKEN)
    try:
        assert first.get("/sd-soft", headers=host).status == 200
        wait_for(entry.exists, "never stored")
    finally:
        assert first.stop() == 0
    second = start_proxy(origin.url, tmp_path, "--workers", "2", "--purge-token", TOKEN)
    try:
        answer = purge(second, {"urls": ["http://soft.test/sd-soft"], "mode": "soft"})
        assert answer.status == 200 and json.loads(answer.body)["purged"] >= 1
    finally:
        assert second.stop() == 0
    third = start_proxy(origin.url, tmp_path, "--workers", "2", "--purge-token", TOKEN)
    try:
        again = third.get("/sd-soft", headers=host)
        assert (again.body, again.header("X-Cache-Status")) == (b"soft", "REVALIDATED")
        sent = origin.requests("/sd-soft")
        assert len(sent) == 2
        assert any(name.lower() == "if-none-match" for name, _ in sent[1]["headers"])
    finally:
        third.stop()
