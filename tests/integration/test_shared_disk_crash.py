"""Two processes writing one disk folder at once (the first owns it, the other shares it), both
SIGKILLed at random moments, then the folder reopened: every acknowledged put is there, every
entry verifies and holds exactly what some put wrote, no temp file or journal of the dead
writers is left. Issue 3: N processes share the disk tier "without corrupting it", and "SIGKILL
at any moment, then restart: the cache is consistent and serves only whole, correct objects"
(docs/design/disk-tier.md, "Sharing one folder")."""

from __future__ import annotations

import asyncio
import hashlib
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from proxy.cache.tiers.disk import TEMP_MARK, DiskTier
from proxy.cache.tiers.disk_sharing import JOURNAL_FOLDER
from tests.integration.test_disk_crash import WRITER, body_for

pytestmark = pytest.mark.integration

CAPACITY_BYTES = 1 << 34  # nothing is evicted: every acknowledged put must survive
REPO_ROOT = Path(__file__).resolve().parents[2]


def start_writer(directory: Path, start: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-c", WRITER, str(directory), str(start)],
        stdout=subprocess.PIPE,
        cwd=REPO_ROOT,
    )


def kill_and_collect(child: subprocess.Popen[bytes]) -> list[tuple[str, int]]:
    """SIGKILL a writer; the puts it acknowledged ("<key> <version>" lines)."""
    child.send_signal(signal.SIGKILL)
    out, _ = child.communicate(timeout=30)
    assert child.returncode == -signal.SIGKILL
    lines = [line.split() for line in out.decode().splitlines()]
    return [(key, int(version)) for key, version in lines]


def whole_version(key: str, body: bytes, versions: set[int]) -> int:
    """The version (among those some writer may have put) that wrote exactly ``body``."""
    for version in versions:
        if hashlib.sha256(f"{key}/{version}".encode()).digest() == body[:32]:
            assert body_for(key, version) == body, f"{key} v{version}: torn or wrong body"
            return version
    raise AssertionError(f"{key} holds a body no put wrote")


def test_two_writers_sigkilled_at_random_moments_leave_a_consistent_folder(
    tmp_path: Path,
) -> None:
    rng = random.Random(20261128)
    acked: dict[str, set[int]] = {}
    written: set[int] = set()  # versions a writer may have put (acknowledged or in flight)
    start = 0
    for _round in range(4):
        starts = (start, start + 50_000)  # each writer its own versions, the same hot keys
        first, second = (start_writer(tmp_path, s) for s in starts)
        time.sleep(rng.uniform(0.8, 1.6))
        puts = kill_and_collect(first)
        time.sleep(rng.uniform(0.0, 0.4))  # the survivor writes on alone for a moment
        second_puts = kill_and_collect(second)
        for begin, done in ((starts[0], puts), (starts[1], second_puts)):
            last = max((version for _, version in done), default=begin)
            written.update(range(begin, last + 10))
        for key, version in puts + second_puts:
            acked.setdefault(key, set()).add(version)
        start += 100_000

        tier = DiskTier(tmp_path, CAPACITY_BYTES, 1 << 30)
        tier.open()
        stored = set(tier.keys())
        missing = {key for key in acked if key.startswith("key-")} - stored
        assert not missing, f"acknowledged puts lost: {sorted(missing)[:5]}"

        async def read_all(keys: set[str], tier: DiskTier = tier) -> None:
            for key in keys:
                variants = await tier.get(key)
                assert variants is not None, f"{key} was indexed but did not verify"
                if key.startswith("key-"):
                    whole_version(key, variants[0].body, {int(key.removeprefix("key-"))})
                else:  # a hot key: any version either writer put, maybe not acknowledged
                    whole_version(key, variants[0].body, written)

        asyncio.run(read_all(stored))
        assert tier.corrupt_dropped == 0  # renames are atomic, temp names per process
        assert not any(TEMP_MARK in p.name for p in tmp_path.rglob("*"))
        assert not list((tmp_path / JOURNAL_FOLDER).glob("*.log"))  # dead writers' journals gone
        tier.close()
    writers_puts = sum(len(v) for v in acked.values())
    assert writers_puts > 200, "the writers barely ran; the test proved nothing"
