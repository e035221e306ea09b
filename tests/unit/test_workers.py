"""`--workers N`, the pure parts (proxy/workers.py, proxy.metrics.merge_worker_metrics): what each
worker is given, how its configuration travels, how purges and metrics cross process lines
(docs/design/workers.md)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from proxy.config import CONFIG_SCHEMA, OriginConfig, ProxyConfig
from proxy.metrics import (
    FamiliesCollector,
    ProxyCollector,
    ProxyStats,
    make_origin_latency,
    merge_worker_metrics,
)
from proxy.purge import parse_purge_request
from proxy.worker import read_config_line
from proxy.workers import (
    RESTART_BASE_DELAY_S,
    RESTART_MAX_DELAY_S,
    STEADY_RUN_S,
    WorkerRole,
    config_from_json,
    config_to_json,
    disk_placement,
    purge_request_body,
    restart_delay,
    worker_config,
    worker_folder,
)

EVERYTHING_SET = ProxyConfig(
    listen=("::1", 8081),
    admin_listen=("127.0.0.2", 9092),
    origins=(
        OriginConfig("https://media.example.net", ("media.example.com", "*.cdn.example.com"), True),
        OriginConfig("http://127.0.0.1:8000"),
    ),
    cache_dir="/var/cache/cachet",
    memory_bytes=3 * 1024**3 + 1,
    disk_bytes=10**12 + 7,
    purge_token="s3cret",
    workers=4,
    coordinator="http://coord:7070",
    nats_url="nats://user:pw@nats:4222",
    targeted_cache_control=("CDN-Cache-Control", "Cachet-Cache-Control"),
    heuristic_fraction=0.25,
    trust_forwarded_from=("10.0.0.0/8", "192.0.2.1"),
    edge_id="edge-a",
    records=False,
    sample_rate="1/16",
    spool_max_bytes=3 * 1024**2,
    manifests_dir="/m",
    enrolment_token="enrol-once",
)


def test_the_configuration_reaches_a_worker_unchanged() -> None:
    assert config_from_json(config_to_json(EVERYTHING_SET)) == EVERYTHING_SET
    assert config_from_json(config_to_json(ProxyConfig())) == ProxyConfig()


def test_the_configuration_is_one_line_for_the_worker_to_read() -> None:
    assert "\n" not in config_to_json(EVERYTHING_SET)


@pytest.mark.parametrize(
    "text",
    [
        "[]",
        '{"listen": ["127.0.0.1", 8080]}',  # keys missing
        config_to_json(ProxyConfig())[:-1] + ', "surprise": 1}',  # a key too many
        "not json",
    ],
)
def test_a_bad_configuration_line_is_refused(text: str) -> None:
    with pytest.raises(ValueError):
        config_from_json(text)


def test_byte_budgets_are_split_between_workers_and_only_worker_0_enrols() -> None:
    configs = [worker_config(EVERYTHING_SET, index) for index in range(4)]
    assert all(c.memory_bytes == EVERYTHING_SET.memory_bytes // 4 for c in configs)
    assert all(c.spool_max_bytes == EVERYTHING_SET.spool_max_bytes // 4 for c in configs)
    assert sum(c.memory_bytes for c in configs) <= EVERYTHING_SET.memory_bytes
    # A one-time token presented by four processes at once would be refused three times.
    assert [c.enrolment_token for c in configs] == ["enrol-once", None, None, None]
    assert all(c.purge_token == "s3cret" and c.listen == ("::1", 8081) for c in configs)


def test_every_worker_shares_the_one_disk_folder_and_its_whole_budget() -> None:
    """Issue 3: N processes sharing "the disk tier without corrupting it": one folder for all,
    the same as one process uses (changing N keeps the cache), the budget for the folder as a
    whole (its owner enforces it, docs/design/disk-tier.md, "Sharing one folder")."""
    config = ProxyConfig(cache_dir="/c", disk_bytes=1001, workers=2)
    assert disk_placement(config, None) == (Path("/c/objects"), 1001)
    placements = [disk_placement(config, WorkerRole(i, 2)) for i in range(2)]
    assert placements == [(Path("/c/objects"), 1001), (Path("/c/objects"), 1001)]
    assert worker_folder(config, None) == Path("/c")
    assert worker_folder(config, WorkerRole(1, 2)) == Path("/c/workers/w1")


def test_a_worker_that_keeps_dying_is_restarted_ever_more_slowly_up_to_a_cap() -> None:
    delays: list[float] = []
    delay: float | None = None
    for _ in range(12):
        delay = restart_delay(delay, ran_s=0.1)
        delays.append(delay)
    assert delays[0] == RESTART_BASE_DELAY_S
    assert delays == sorted(delays)
    assert delays[-1] == RESTART_MAX_DELAY_S
    # One that had run steadily before dying starts again soon.
    assert restart_delay(RESTART_MAX_DELAY_S, ran_s=STEADY_RUN_S) == RESTART_BASE_DELAY_S


@pytest.mark.parametrize(
    "body",
    [
        b'{"urls": ["http://WWW.Example.com:80/a.css?x=1", "http://h"]}',
        b'{"prefixes": ["http://Example.com/img/", "https://h:443"], "mode": "soft"}',
        b'{"surrogate_keys": ["product-42", "all"], "content_ids": ["sha256:' + b"a" * 64 + b'"]}',
        b'{"urls": ["http://[::1]:8080/x"], "prefixes": ["http://[::1]:8080/"], "mode": "hard"}',
    ],
)
def test_a_purge_reaches_each_worker_as_the_same_request(body: bytes) -> None:
    """docs/purge.md: the supervisor re-sends what it accepted; each worker must read the very
    same targets (cache keys) and mode."""
    request = parse_purge_request(body)
    assert parse_purge_request(purge_request_body(request)) == request


def _worker_text(hits: int, purges: int) -> str:
    registry = CollectorRegistry()
    stats = ProxyStats()
    stats.fresh_hits = hits
    stats.purges[("urls", "hard")] = purges
    stats.purged_objects["hard"] = purges
    registry.register(ProxyCollector(stats, lambda: 10, lambda: 1, lambda: 0, lambda: 2))
    make_origin_latency(registry).observe(0.02)
    return generate_latest(registry).decode()


def test_worker_metrics_merge_into_one_family_per_name_labelled_by_worker() -> None:
    merged = merge_worker_metrics({0: _worker_text(3, 1), 1: _worker_text(5, 1)})
    registry = CollectorRegistry()
    registry.register(FamiliesCollector(merged))
    text = generate_latest(registry).decode()
    families = {f.name: f for f in text_string_to_metric_families(text)}  # valid text format
    assert text.count("# TYPE cachet_requests_total counter") == 1
    hits = {
        s.labels["worker"]: s.value
        for s in families["cachet_requests"].samples
        if s.labels["outcome"] == "hit"
    }
    assert hits == {"0": 3, "1": 5}
    latency = families["cachet_origin_latency_seconds"]
    assert latency.type == "histogram"
    counts = [s for s in latency.samples if s.name.endswith("_count")]
    assert sorted(s.labels["worker"] for s in counts) == ["0", "1"]
    # Every sample says which worker it came from.
    assert all("worker" in s.labels for f in families.values() for s in f.samples)
    # Objects purged are each worker's own; purge operations are counted once, by the
    # supervisor, so the workers' copies are not merged in.
    assert "cachet_purges" not in families
    assert {s.labels["worker"] for s in families["cachet_purged_objects"].samples} == {"0", "1"}


def test_a_worker_whose_metrics_do_not_parse_is_an_error() -> None:
    with pytest.raises(ValueError):
        merge_worker_metrics({0: "cachet_requests_total{outcome=hit 1\n"})


def test_the_configuration_line_is_read_across_several_writes() -> None:
    read_end, write_end = os.pipe()
    try:
        os.write(write_end, b'{"a": ')
        os.write(write_end, b"1}\n")
        assert read_config_line(read_end) == '{"a": 1}\n'
    finally:
        os.close(read_end)
        os.close(write_end)


def test_a_supervisor_that_closes_the_pipe_before_the_line_is_an_error() -> None:
    read_end, write_end = os.pipe()
    os.write(write_end, b'{"half": ')
    os.close(write_end)
    try:
        with pytest.raises(ValueError):
            read_config_line(read_end)
    finally:
        os.close(read_end)


ROOT = Path(__file__).resolve().parents[2]


def test_the_workers_key_says_the_same_in_help_docs_and_example() -> None:
    """The flag's help, docs/configuration.md and config.example.toml describe what --workers
    does now (a supervisor and N workers), not the old "not yet"."""
    key = CONFIG_SCHEMA["workers"]
    assert "supervisor" in key.help and "SO_REUSEPORT" in key.help
    doc = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    (row,) = [line for line in doc.splitlines() if line.startswith("| `workers` |")]
    assert row.rstrip(" |").endswith(key.help)
    example = (ROOT / "config.example.toml").read_text(encoding="utf-8").splitlines()
    at = example.index("# workers = 1")
    comment: list[str] = []
    for line in reversed(example[:at]):
        if not line.startswith("## ") or line.startswith("## --"):
            break
        comment.insert(0, line.removeprefix("## "))
    described = " ".join(comment)
    assert "supervisor" in described and "SO_REUSEPORT" in described
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    after_flag = readme[readme.index("`--workers N`") :][:300]
    for text in (key.help, described, after_flag):
        assert "not yet" not in text and "one process serves" not in text
    assert "docs/design/workers.md" in described and (ROOT / "docs/design/workers.md").exists()
