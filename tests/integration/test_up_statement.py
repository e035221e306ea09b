"""`cachet up` end to end, the money half (issue 8): traffic through the proxy, a period closed
through the admin API, and the creator's statement equal to what the traffic and the pricing
rules say (worked out independently in ``expected_statement``), anchored in the coordinator's
global Merkle log (checked with ``cachet verify statement``, and found in the log's tlog-tiles
export).

Periods are UTC hours and one closes only once it is over (docs/billing.md §4). So the whole
`cachet up` process tree runs under libfaketime: every process's wall clock is the real clock
plus an offset read from a file (``FAKETIME_TIMESTAMP_FILE``, re-read each second), and the test
moves that offset across an hour boundary as the hour would pass. Nothing in the product knows:
the binaries, the SQLite files and the HTTP APIs are the real ones. Monotonic clocks are left
alone (``FAKETIME_DONT_FAKE_MONOTONIC``) so event-loop timers, sealing and retries keep real time.
"""

from __future__ import annotations

import glob
import json
import math
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from hashlib import sha256
from pathlib import Path
from typing import Any

import pytest

from provenance.checkpoint import parse_checkpoint
from provenance.keys import parse_verifier_key
from provenance.merkle import MerkleTree, leaf_hash
from provenance.signed_note import open_note
from provenance.statement_leaves import StatementLeaf, parse_global_log_entry
from provenance.tiles import decode_bundle, tile_for
from tests.integration.conftest import http_request
from tests.integration.expected_statement import Served, expected_statement, statement_hash
from tests.integration.test_up import Stack, start_stack

LIBFAKETIME_GLOBS = (
    "/usr/lib/*/faketime/libfaketime.so.1",
    "/usr/lib/faketime/libfaketime.so.1",
    "/usr/local/lib/faketime/libfaketime.so.1",
)
WAIT_S = 30.0
FROM_CACHE = {"HIT", "STALE", "UPDATING", "REVALIDATED"}  # docs/billing.md §2: "hits"
# An operator's pricing for the second hour (PUT /v1/admin/pricing), so the fee, the savings
# share, a quality multiplier, training rates and the minimum payout all take part.
OPERATOR_PRICING: dict[str, Any] = {
    "currency": "USD",
    "origin_cost_per_gb": "0.09",
    "edge_cost_per_gb": "0.02",
    "platform_fee_bps": 2000,
    "minimum_payout": "5.00",
    "view": {"per_hit": "0.00001", "per_gb": "0.01", "savings_share": "0.15"},
    "training": {"per_hit": "0.0002", "per_gb": "0.05", "savings_share": "0.5"},
    "quality": {"demo-creator": "1.1"},  # and chart.svg's content id at 1.5, added in the test
}


def _find_libfaketime() -> str | None:
    for pattern in LIBFAKETIME_GLOBS:
        found = sorted(glob.glob(pattern))
        if found:
            return found[0]
    return None


@pytest.fixture(scope="module")
def libfaketime() -> str:
    """The library, installed as scripts/check does when we are root; skipped only when it is
    absent and cannot be installed."""
    found = _find_libfaketime()
    if found is not None:
        return found
    why = "needs libfaketime (Debian: apt-get install libfaketime; scripts/check does as root)"
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        pytest.skip(why)
    install = ["apt-get", "install", "-y", "-qq", "libfaketime"]
    done = subprocess.run(install, capture_output=True, text=True, timeout=300)
    if done.returncode != 0:
        subprocess.run(["apt-get", "update", "-qq"], capture_output=True, timeout=300)
        done = subprocess.run(install, capture_output=True, text=True, timeout=300)
    found = _find_libfaketime()
    if found is None:
        pytest.skip(f"{why}; apt-get failed: {done.stderr.strip()[-300:]}")
    return found


@dataclass
class FakeClock:
    """The offset libfaketime adds to the real clock of every process of the stack."""

    spec: Path
    offset_s: int = 0

    def set(self, fake_now: datetime) -> None:
        self.offset_s = math.ceil((fake_now - datetime.now(UTC)).total_seconds())
        tmp = self.spec.with_suffix(".tmp")
        tmp.write_text(f"{self.offset_s:+d}\n")
        tmp.replace(self.spec)  # a process re-reading it never sees half a line

    def env(self, library: str) -> dict[str, str]:
        preload = " ".join(p for p in (library, os.environ.get("LD_PRELOAD", "")) if p)
        return {
            "LD_PRELOAD": preload,
            "FAKETIME_TIMESTAMP_FILE": str(self.spec),
            "FAKETIME_CACHE_DURATION": "1",
            "FAKETIME_DONT_FAKE_MONOTONIC": "1",
        }


@dataclass
class Billing:
    """The stack, its fake clock, the admin and creator tokens, and what the test sent."""

    stack: Stack
    clock: FakeClock
    hour: datetime  # the fake hour H the first traffic falls in
    admin_token: str
    creator_token: str = ""
    sent: int = 0
    content: dict[str, tuple[str, int]] = field(default_factory=dict)  # path -> (cid, size)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.stack.coordinator}{path}"

    def call(
        self, method: str, path: str, token: str | None = None, body: Any = None
    ) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.url(path), data=data, method=method)
        if token:
            request.add_header("Authorization", f"Bearer {token}")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                raw, status = response.read(), response.status
        except urllib.error.HTTPError as error:
            raw, status = error.read(), error.code
        text = raw.decode()
        return status, (json.loads(text) if text.startswith(("{", "[")) else text)

    def admin(self, method: str, path: str, body: Any = None) -> Any:
        status, answer = self.call(method, path, self.admin_token, body)
        assert 200 <= status < 300, (method, path, status, answer)
        return answer

    def through_proxy(
        self, method: str, name: str, expect: str, use: str, served: list[Served]
    ) -> None:
        """One request for a demo file; it must come back 200 with the cache outcome
        ``expect``, and it is noted in ``served`` as the client saw it."""
        headers = {"X-Cachet-Use": "training"} if use == "training" else {}
        response = http_request(self.stack.proxy, method, "/creator/" + name, headers)
        self.sent += 1
        assert (response.status, response.header("X-Cache-Status")) == (200, expect), name
        content_id, size = self.content[name]
        assert len(response.body) == (size if method == "GET" else 0)
        served.append(Served(content_id, use, expect in FROM_CACHE, len(response.body), method))

    def not_billable(self, path: str, status: int) -> None:
        assert http_request(self.stack.proxy, "GET", path).status == status
        self.sent += 1

    def wait_until_ingested(self) -> None:
        """Every request sent has one record, stored by the coordinator (its /metrics)."""
        pattern = re.compile(r"^cachet_coordinator_records_ingested_total (\S+)$", re.M)
        deadline = time.monotonic() + WAIT_S
        stored = 0
        while time.monotonic() < deadline:
            found = pattern.search(self.call("GET", "/metrics")[1])
            stored = int(float(found.group(1))) if found else 0
            if stored >= self.sent:
                assert stored == self.sent, "more records than requests"
                return
            time.sleep(0.2)
        raise AssertionError(f"{stored} of {self.sent} records reached the coordinator")

    def jump_to(self, fake_now: datetime) -> None:
        """Move every process's clock to ``fake_now`` and wait until each has read it (the
        Date each one's HTTP listener sends)."""
        self.clock.set(fake_now)
        listeners = [self.url("/healthz"), f"http://127.0.0.1:{self.stack.proxy_admin}/healthz",
                     f"http://127.0.0.1:{self.stack.origin}/"]  # fmt: skip
        deadline = time.monotonic() + WAIT_S
        for url in listeners:
            while True:
                with urllib.request.urlopen(url, timeout=10) as response:
                    date = parsedate_to_datetime(response.headers["Date"])
                if date >= fake_now.replace(microsecond=0):
                    break
                assert time.monotonic() < deadline, f"{url} still says {date}"
                time.sleep(0.2)

    def close(self, period: str) -> tuple[int, Any]:
        return self.call("POST", f"/v1/admin/periods/close?period={period}", self.admin_token)

    def reconciliation(self, period: str) -> dict[str, Any]:
        """The one edge's reconciliation: served, billed, the non-zero differences by reason;
        nothing may be unexplained."""
        (row,) = self.admin("GET", f"/v1/admin/reconciliation?period={period}")["edges"]
        assert row["edge"] == "edge-demo"
        assert row["unexplained_transport"] == row["unexplained_billing"] == 0, row
        differences = {reason: n for reason, n in row["differences"].items() if n}
        return {"expected": row["expected"], "billed": row["billed"], "differences": differences}

    def creator_statement(self, period: str) -> dict[str, Any]:
        """The creator's own statement (creator token), checked offline as a creator would
        with ``cachet verify statement`` and the log key: a leaf of the coordinator's global
        log, in its signed checkpoint (the one /v1/checkpoint serves, or a later one)."""
        status, answer = self.call("GET", f"/v1/creator/statements/{period}", self.creator_token)
        assert status == 200, answer
        statement, anchor = answer["statement"], answer["anchor"]
        key_text = self.call("GET", "/v1/log/key")[1].strip()
        log_key = parse_verifier_key(key_text)
        checkpoint = parse_checkpoint(open_note(anchor["checkpoint"].encode(), [log_key]))
        served = self.call("GET", "/v1/checkpoint")[1]
        global_log = parse_checkpoint(open_note(served.encode(), [log_key]))
        assert checkpoint.origin == global_log.origin and checkpoint.size <= global_log.size
        assert checkpoint.size == anchor["tree_size"]
        folder = self.stack.data / "verify"
        folder.mkdir(exist_ok=True)
        (folder / "log.pub").write_text(key_text + "\n")
        (folder / f"{period}.json").write_text(json.dumps(answer))
        done = subprocess.run(
            [sys.executable, "-m", "cachet", "verify", "statement", f"{period}.json",
             "--log-key", "log.pub", "--origin", global_log.origin, "--json"],
            cwd=folder, capture_output=True, text=True, timeout=60, check=False,
            env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        verified = json.loads(done.stdout)
        assert (verified["sha256"], verified["leaf_index"]) == (
            statement["sha256"], anchor["leaf_index"])  # fmt: skip
        admin_view = self.admin("GET", f"/v1/admin/statements?period={period}")["statements"]
        assert admin_view == [statement]
        assert statement_hash(statement) == statement["sha256"]
        return dict(statement)


@pytest.fixture
def billing(libfaketime: str, tmp_path: Path) -> Iterator[Billing]:
    clock = FakeClock(tmp_path / "faketime")
    hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
    # Five minutes into the fake hour H: time enough to start and send the first hour's traffic.
    clock.set(hour + timedelta(minutes=5))
    stack = start_stack(tmp_path / "data", clock.env(libfaketime))
    try:
        token = re.search(r"cachet-admin-[0-9a-f]+", stack.output.read_text())
        assert token is not None, "cachet up printed no admin token"
        yield Billing(stack, clock, hour, token.group(0))
    finally:
        assert stack.stop() == 0


def _period(start: datetime) -> str:
    return "hour-" + start.strftime("%Y-%m-%dT%H:%M:%SZ")


def test_a_closed_hour_bills_what_the_proxy_served_at_the_configured_prices(
    billing: Billing,
) -> None:
    data = billing.stack.data
    manifest = json.loads((data / "creator" / "manifest.json").read_bytes())
    manifest_id = json.loads((data / "up.json").read_text())["manifest"]
    terms = manifest["payout_terms"]
    for item in manifest["items"]:
        body = (data / "demo-content" / item["path"].removeprefix("/creator/")).read_bytes()
        assert item["content_id"] == "sha256:" + sha256(body).hexdigest()
        billing.content[item["path"].removeprefix("/creator/")] = (item["content_id"], len(body))
    creator = manifest["creator"]
    billing.creator_token = billing.admin("POST", f"/v1/admin/creators/{creator}/tokens")["token"]
    hour = billing.hour
    first, second = _period(hour), _period(hour + timedelta(hours=1))

    # Hour H: the pricing `cachet up` configured (its [pricing] seed) and the manifest's terms.
    up_pricing = billing.admin("GET", "/v1/admin/pricing")
    assert (up_pricing["version"], up_pricing["actor"]) == (1, "config")
    served_first: list[Served] = []
    go = billing.through_proxy
    for method, name, expect, use in [
        ("GET", "article.html", "MISS", "view"), ("GET", "article.html", "HIT", "view"),
        ("GET", "article.html", "HIT", "view"), ("HEAD", "article.html", "HIT", "view"),
        ("GET", "chart.svg", "MISS", "view"), ("GET", "chart.svg", "HIT", "view"),
        ("GET", "preview.bin", "MISS", "view"), ("GET", "preview.bin", "HIT", "view"),
        ("GET", "dataset.csv", "MISS", "training"), ("GET", "dataset.csv", "HIT", "training"),
        ("GET", "dataset.csv", "HIT", "view"),
    ]:  # fmt: skip
        go(method, name, expect, use, served_first)
    billing.not_billable("/creator/no-such-file.html", 404)  # the creator's path, not content
    billing.not_billable("/hello.txt", 200)  # the sample origin's own page: no manifest names it
    billing.wait_until_ingested()

    # docs/billing.md §4: a period closes once it is over; the admin API says so, and refuses a
    # period that is not an hour, and anyone without the admin token.
    status, answer = billing.close(first)
    assert status == 409 and "not ended" in answer["detail"], answer
    assert billing.close(first.replace(":00:00Z", ":30:00Z"))[0] == 400
    assert billing.call("POST", f"/v1/admin/periods/close?period={first}")[0] == 401
    assert billing.call("POST", f"/v1/admin/periods/close?period={first}", "nope")[0] == 401

    # Hour H+1: the cached copies (max-age=60) are 55 minutes stale; the origin's 304s renew
    # them, so they are served from the cache. None of this may land in hour H.
    billing.jump_to(hour + timedelta(hours=1, seconds=2))
    served_second: list[Served] = []
    for method, name, expect, use in [
        ("GET", "article.html", "REVALIDATED", "view"), ("GET", "article.html", "HIT", "view"),
        ("GET", "chart.svg", "REVALIDATED", "view"), ("GET", "preview.bin", "REVALIDATED", "view"),
        ("GET", "dataset.csv", "REVALIDATED", "training"),
        ("GET", "dataset.csv", "HIT", "training"),
    ]:  # fmt: skip
        go(method, name, expect, use, served_second)
    billing.wait_until_ingested()

    closed = billing.admin("POST", f"/v1/admin/periods/close?period={first}")
    assert closed["period"] == first and closed["statements"] == 1
    statement = first_statement = billing.creator_statement(first)
    expected = expected_statement(
        creator=creator, manifest_id=manifest_id, terms=terms, pricing=up_pricing["pricing"],
        hour_start=hour, served=served_first,
    )  # fmt: skip
    assert {k: v for k, v in statement.items() if k != "sha256"} == expected
    assert statement["gross_micros"] > 0  # the manifest's per-hit terms earn something
    assert billing.close(first) == (200, closed)  # closing again changes nothing
    # docs/billing.md §5: every record of the hour is billed or excluded with its reason: the
    # 404 and the HEAD hit are non-billable (§1), the origin's own page unknown content.
    billed_first = sum(s.bills for s in served_first)
    assert billed_first == len(served_first) - 1  # the one HEAD
    assert billing.reconciliation(first) == {
        "expected": len(served_first) + 2, "billed": billed_first,
        "differences": {"non-billable": 2, "unknown-content": 1},
    }  # fmt: skip

    # The operator changes the prices (an audited new version); hour H+1 is billed with them.
    chart_id = billing.content["chart.svg"][0]
    pricing = {**OPERATOR_PRICING, "quality": {**OPERATOR_PRICING["quality"], chart_id: "1.5"}}
    assert billing.admin("PUT", "/v1/admin/pricing", pricing)["version"] == 2
    assert billing.close(second)[0] == 409
    billing.jump_to(hour + timedelta(hours=2, seconds=2))
    billing.admin("POST", f"/v1/admin/periods/close?period={second}")
    statement = billing.creator_statement(second)
    expected = expected_statement(
        creator=creator, manifest_id=manifest_id, terms=terms,
        pricing=billing.admin("GET", "/v1/admin/pricing")["pricing"], hour_start=hour
        + timedelta(hours=1), served=served_second,
        carried_in_micros=first_statement["carry_out_micros"],
    )  # fmt: skip
    assert {k: v for k, v in statement.items() if k != "sha256"} == expected
    assert billing.reconciliation(second) == {
        "expected": len(served_second), "billed": len(served_second), "differences": {},
    }  # fmt: skip
    # Under the $5 minimum: nothing paid, all of it carried to the next period.
    assert statement["payout_micros"] == 0 < statement["carry_out_micros"]
    assert statement["fee_micros"] > 0

    # The log as C2SP tlog-tiles, exported beside the running coordinator: a mirror with the
    # files and the log key finds both statements among the batches, each leaf recomputed from
    # its entry and the root from the leaves (c2sp.org/tlog-tiles "Log entries", RFC 9162).
    out = data / "mirror"
    done = subprocess.run(
        [sys.executable, "-m", "cachet", "coordinator", "export-tiles",
         "--data", str(data / "coordinator"), "--out", str(out), "--json"],
        capture_output=True, text=True, timeout=120, check=False,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    log_key = parse_verifier_key(billing.call("GET", "/v1/log/key")[1].strip())
    checkpoint = parse_checkpoint(open_note((out / "checkpoint").read_bytes(), [log_key]))
    entries: list[bytes] = []
    for start in range(0, checkpoint.size, 256):
        tile = tile_for(0, start // 256, checkpoint.size)
        entries += decode_bundle((out / tile.entries_bundle().path).read_bytes(), tile.width)
    assert MerkleTree([leaf_hash(e) for e in entries]).root() == checkpoint.root_hash
    leaves = [parse_global_log_entry(e) for e in entries]
    anchored = [leaf for leaf in leaves if isinstance(leaf, StatementLeaf)]
    assert [(s.period, s.sha256) for s in anchored] == [
        (first, first_statement["sha256"]), (second, statement["sha256"])
    ]  # fmt: skip
    assert len(leaves) - len(anchored) >= 2  # the batches around them
