"""`--workers N`: what each serving process gets (pure: no I/O, no processes).

The supervisor (proxy/supervisor.py) starts N worker processes (proxy/worker.py); each is the
normal serving process with a `WorkerRole`. What is split, what is per worker and how the
configuration travels to a worker are decided here, in one place (docs/design/workers.md).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from proxy.config import OriginConfig, ProxyConfig
from proxy.purge import PurgeRequest

WORKERS_FOLDER = "workers"
RESTART_BASE_DELAY_S = 0.5
RESTART_MAX_DELAY_S = 30.0
STEADY_RUN_S = 60.0  # a worker that ran this long before dying gets a fresh back-off


@dataclass(frozen=True, slots=True)
class WorkerRole:
    """This serving process is worker ``index`` of ``count`` under a supervisor."""

    index: int
    count: int

    @property
    def name(self) -> str:
        """``w<index>``: the worker's folder name, as the sealer expects for its spool."""
        return f"w{self.index}"


def worker_folder(config: ProxyConfig, worker: WorkerRole | None) -> Path:
    """A serving process's own state (registry feed state): the cache folder for a single
    process, ``workers/w<i>/`` under it for a worker."""
    root = Path(config.cache_dir)
    return root if worker is None else root / WORKERS_FOLDER / worker.name


def disk_placement(config: ProxyConfig, worker: WorkerRole | None) -> tuple[Path, int]:
    """Where a serving process's disk tier lives and its byte budget: one folder,
    ``<cache-dir>/objects``, and the whole budget, for one process and for every worker alike.
    The workers share it (docs/design/disk-tier.md, "Sharing one folder"): the first to open
    it owns it and keeps the whole folder within the budget, so an object one worker cached
    is a hit for all, and changing N keeps the cache."""
    return Path(config.cache_dir) / "objects", config.disk_bytes


def worker_config(config: ProxyConfig, index: int) -> ProxyConfig:
    """Worker ``index``'s configuration: byte budgets (memory, record spool) split evenly, so
    N workers together stay within what the operator configured; only worker 0 holds the
    one-time enrolment token, so it is presented once, not once per worker."""
    count = config.workers
    return replace(
        config,
        memory_bytes=config.memory_bytes // count,
        spool_max_bytes=config.spool_max_bytes // count,
        enrolment_token=config.enrolment_token if index == 0 else None,
    )


def restart_delay(previous_s: float | None, ran_s: float) -> float:
    """How long to wait before starting a dead worker again: the base delay the first time or
    after it had run steadily, else double the previous delay, up to a cap (a worker that
    keeps dying at start-up is not restarted in a tight loop)."""
    if previous_s is None or ran_s >= STEADY_RUN_S:
        return RESTART_BASE_DELAY_S
    return min(previous_s * 2, RESTART_MAX_DELAY_S)


def config_to_json(config: ProxyConfig) -> str:
    """One line of JSON: how a worker receives its configuration (on its stdin, so secrets such
    as the purge token never appear on a command line or in the environment)."""
    obj: dict[str, Any] = {}
    for item in fields(ProxyConfig):
        value = getattr(config, item.name)
        if item.name == "origins":
            value = [{"url": o.url, "hosts": list(o.hosts), "trusted": o.trusted} for o in value]
        elif isinstance(value, tuple):
            value = list(value)
        obj[item.name] = value
    return json.dumps(obj, sort_keys=True)


def config_from_json(text: str) -> ProxyConfig:
    """The inverse of `config_to_json`; raises ValueError (or KeyError/TypeError) on anything
    else."""
    obj = json.loads(text)
    if not isinstance(obj, dict):
        raise ValueError("worker configuration must be a JSON object")
    names = {item.name for item in fields(ProxyConfig)}
    if set(obj) != names:
        raise ValueError(f"worker configuration keys differ: {sorted(set(obj) ^ names)}")
    values: dict[str, Any] = {}
    for name, value in obj.items():
        if name == "origins":
            value = tuple(
                OriginConfig(url=o["url"], hosts=tuple(o["hosts"]), trusted=o["trusted"])
                for o in value
            )
        elif isinstance(value, list):
            value = tuple(value)
        values[name] = value
    return ProxyConfig(**values)


def purge_request_body(request: PurgeRequest) -> bytes:
    """The JSON body that asks a worker for the same purge (what docs/purge.md describes). The
    URLs are cache keys, which are absolute URLs already normalised, so parsing this body again
    gives back ``request``."""
    body: dict[str, Any] = {kind: list(getattr(request, kind)) for kind in request.kinds()}
    body["mode"] = request.mode
    return json.dumps(body).encode("utf-8")
