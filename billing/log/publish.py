"""Publishing each new checkpoint to external witnesses (issue 5).

Every configured target (each URL in ``checkpoint_publish_urls``, and the
``checkpoint_publish_command``) gets the checkpoint's C2SP signed note exactly as
``/v1/checkpoint`` serves it: a URL as the body of a ``POST`` (``text/plain; charset=utf-8``),
the command on its stdin, with ``CACHET_CHECKPOINT_ORIGIN``, ``_SIZE`` and ``_ROOT`` (hex) in its
environment.

A witness only needs the latest checkpoint, so each target holds one pending slot: a newer
checkpoint replaces an undelivered older one (newest wins), and the slot is emptied only when
that checkpoint was delivered. A failed delivery is retried after an exponential back-off with
full jitter, whatever arrives meanwhile, so a dead witness is not hammered once per checkpoint;
the retry sends the newest pending checkpoint, so the latest is never skipped. ``offer`` only
writes the slots and wakes the targets' tasks: a slow or dead witness never blocks the sequencer,
hence never ingest. Memory is one slot per target.

The decisions (what to take, how long to wait, what an answer means, what a log line may show)
are the plain functions below; ``CheckpointPublisher`` and the two targets are the I/O shell.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import shutil
import signal
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import parse_qsl, urlsplit, urlunsplit

import aiohttp
from prometheus_client import CollectorRegistry, Counter, Gauge

from billing.config import ENV_PREFIX, ConfigError, CoordinatorConfig
from billing.store.base import StoredCheckpoint

log = logging.getLogger("cachet.coordinator.publish")

COMMAND_TARGET = "command"
NOTE_CONTENT_TYPE = "text/plain; charset=utf-8"  # as /v1/checkpoint serves it
OK, HTTP_ERROR, UNREACHABLE, TIMEOUT, COMMAND_FAILED = (
    "ok",
    "http_error",
    "unreachable",
    "timeout",
    "command_failed",
)


# -- pure decisions ----------------------------------------------------------------------------


def takes(
    candidate: StoredCheckpoint, pending: StoredCheckpoint | None, delivered_size: int | None
) -> bool:
    """Whether a target's slot takes ``candidate``: only if it is newer than both what waits in
    the slot and what the target already has (a checkpoint of the same size is the same note)."""
    newest = delivered_size
    if pending is not None and (newest is None or pending.size > newest):
        newest = pending.size
    return newest is None or candidate.size > newest


def retry_delay_s(failures: int, initial_s: float, max_s: float, rand: float) -> float:
    """Wait after the ``failures``-th consecutive failure (>= 1): full jitter (``rand`` uniform in
    [0, 1)) over an exponential ceiling ``initial_s * 2**(failures - 1)`` capped at ``max_s``."""
    if failures < 1:
        raise ValueError("retry_delay_s() is for after a failure")
    ceiling = max_s if failures > 64 else min(max_s, initial_s * 2 ** (failures - 1))
    return rand * ceiling


def http_outcome(status: int) -> str:
    """Any 2xx is delivered. Anything else (a 3xx is not followed: it would turn a POST into a
    GET) is retried, 4xx too: a witness refusing for a fixable reason (auth, a proxy) must still
    get the latest checkpoint once fixed, even if the log is quiet by then."""
    return OK if 200 <= status < 300 else HTTP_ERROR


def command_outcome(returncode: int) -> str:
    return OK if returncode == 0 else COMMAND_FAILED


def redact_url(url: str) -> str:
    """The URL for logs and metric labels: user info and query values replaced by ``***`` (either
    may hold a credential), the fragment dropped."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        netloc = "***@" + netloc.rpartition("@")[2]
    query = "&".join(f"{key}=***" for key, _ in parse_qsl(parts.query, keep_blank_values=True))
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))


def command_environment(
    base: Mapping[str, str], origin: str, checkpoint: StoredCheckpoint
) -> dict[str, str]:
    """The command's environment: the coordinator's, less its own ``CACHET_COORDINATOR_*``
    settings (a database DSN may hold a password), plus the checkpoint's origin, size, root."""
    env = {key: value for key, value in base.items() if not key.startswith(ENV_PREFIX)}
    env["CACHET_CHECKPOINT_ORIGIN"] = origin
    env["CACHET_CHECKPOINT_SIZE"] = str(checkpoint.size)
    env["CACHET_CHECKPOINT_ROOT"] = checkpoint.root_hash
    return env


# -- targets (I/O) -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Attempt:
    outcome: str
    detail: str = ""  # for the log: never a credential


class Target(Protocol):
    name: str  # metric label and log name, secrets-free

    async def deliver(self, checkpoint: StoredCheckpoint) -> Attempt: ...
    async def aclose(self) -> None: ...


class UrlTarget:
    def __init__(self, url: str, timeout_s: float) -> None:
        self.url, self.name, self._timeout_s = url, redact_url(url), timeout_s
        self._session: aiohttp.ClientSession | None = None

    async def deliver(self, checkpoint: StoredCheckpoint) -> Attempt:
        if self._session is None:
            timeout = aiohttp.ClientTimeout(total=self._timeout_s)
            self._session = aiohttp.ClientSession(timeout=timeout)
        body = checkpoint.note.encode("utf-8")
        headers = {"Content-Type": NOTE_CONTENT_TYPE}
        try:  # user info in the URL becomes Basic auth (aiohttp)
            async with self._session.post(
                self.url, data=body, headers=headers, allow_redirects=False
            ) as response:
                response.release()
                return Attempt(http_outcome(response.status), f"HTTP {response.status}")
        except TimeoutError:
            return Attempt(TIMEOUT, f"no answer within {self._timeout_s:g} s")
        except aiohttp.ClientError as exc:  # its text may quote the URL: name the kind only
            os_error = getattr(exc, "os_error", None)
            reason = os_error.strerror if isinstance(os_error, OSError) else None
            return Attempt(UNREACHABLE, type(exc).__name__ + (f" ({reason})" if reason else ""))

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


class CommandTarget:
    """Runs ``argv`` (no shell) in a session of its own, so a timeout kills what it started too.
    Its stdout is discarded; its stderr is the coordinator's."""

    name = COMMAND_TARGET

    def __init__(self, argv: Sequence[str], origin: str, timeout_s: float) -> None:
        self._argv, self._origin, self._timeout_s = tuple(argv), origin, timeout_s

    async def deliver(self, checkpoint: StoredCheckpoint) -> Attempt:
        env = command_environment(os.environ, self._origin, checkpoint)
        try:
            process = await asyncio.create_subprocess_exec(
                *self._argv,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.DEVNULL,
                env=env,
                start_new_session=True,
            )
        except OSError as exc:
            return Attempt(COMMAND_FAILED, f"cannot start {self._argv[0]}: {exc.strerror}")
        try:
            note = checkpoint.note.encode("utf-8")
            await asyncio.wait_for(process.communicate(note), self._timeout_s)
        except TimeoutError:
            return Attempt(TIMEOUT, f"{self._argv[0]} killed after {self._timeout_s:g} s")
        finally:
            if process.returncode is None:  # timed out, or the coordinator is stopping
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                await process.wait()
        code = process.returncode
        assert code is not None  # communicate() returned: the process exited
        return Attempt(command_outcome(code), f"{self._argv[0]} exited with status {code}")

    async def aclose(self) -> None:
        return None


# -- the publisher -----------------------------------------------------------------------------


class _Metrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.publishes = Counter(
            "cachet_coordinator_checkpoint_publishes",
            "Checkpoint deliveries to witnesses, by target and outcome",
            ["target", "outcome"],
            registry=registry,
        )
        self.published_size = Gauge(
            "cachet_coordinator_checkpoint_published_size",
            "Tree size of the latest checkpoint a target accepted (-1: none yet)",
            ["target"],
            registry=registry,
        )


class _Slot:
    """One target's pending checkpoint and its delivery loop."""

    def __init__(
        self,
        target: Target,
        metrics: _Metrics,
        retry: tuple[float, float],
        rand: Callable[[], float],
    ) -> None:
        self.target, self._metrics, self._retry, self._rand = target, metrics, retry, rand
        self.pending: StoredCheckpoint | None = None
        self.delivered_size: int | None = None
        self._ready = asyncio.Event()
        self._failures = 0
        self.task: asyncio.Task[None] | None = None
        metrics.published_size.labels(target.name).set(-1)

    def offer(self, checkpoint: StoredCheckpoint) -> None:
        if takes(checkpoint, self.pending, self.delivered_size):
            self.pending = checkpoint
            self._ready.set()
        if self.task is None:  # started on first use: the sequencer runs in the loop by then
            self.task = asyncio.create_task(self._run(), name=f"cachet-publish-{self.target.name}")

    async def _run(self) -> None:
        try:
            while True:
                checkpoint = self.pending
                if checkpoint is None:
                    self._ready.clear()
                    await self._ready.wait()
                    continue
                await self._attempt(checkpoint)
        finally:
            await self.target.aclose()

    async def _attempt(self, checkpoint: StoredCheckpoint) -> None:
        attempt = await self.target.deliver(checkpoint)
        name = self.target.name
        self._metrics.publishes.labels(name, attempt.outcome).inc()
        if attempt.outcome == OK:
            if self._failures:
                log.info("checkpoint %d delivered to %s", checkpoint.size, name)
            self._failures = 0
            self.delivered_size = checkpoint.size
            self._metrics.published_size.labels(name).set(checkpoint.size)
            if self.pending is checkpoint:
                self.pending = None
            return
        self._failures += 1
        delay_s = retry_delay_s(self._failures, *self._retry, self._rand())
        log.warning(
            "checkpoint %d to %s: %s (%s); retrying in %.1f s",
            checkpoint.size, name, attempt.outcome, attempt.detail, delay_s,
        )  # fmt: skip
        await asyncio.sleep(delay_s)


class CheckpointPublisher:
    """Hands every new checkpoint to each target's slot; ``close`` stops the delivery tasks."""

    def __init__(
        self,
        targets: Sequence[Target],
        registry: CollectorRegistry,
        retry_initial_s: float,
        retry_max_s: float,
        rand: Callable[[], float] = random.random,
    ) -> None:
        metrics = _Metrics(registry)
        retry = (retry_initial_s, retry_max_s)
        self.slots = [_Slot(target, metrics, retry, rand) for target in targets]

    def offer(self, checkpoint: StoredCheckpoint) -> None:
        """Never blocks: it only fills the slots."""
        for slot in self.slots:
            slot.offer(checkpoint)

    async def close(self) -> None:
        for slot in self.slots:
            if slot.task is not None:
                slot.task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await slot.task
                slot.task = None


def publisher_from_config(
    config: CoordinatorConfig, registry: CollectorRegistry
) -> CheckpointPublisher | None:
    """The configured publisher, or None when no target is configured. A command whose program
    can't be found is refused here, at start, rather than at the first checkpoint."""
    timeout_s = config.checkpoint_publish_timeout_s
    targets: list[Target] = [UrlTarget(url, timeout_s) for url in config.checkpoint_publish_urls]
    command = config.checkpoint_publish_command
    if command:
        if shutil.which(command[0]) is None:
            raise ConfigError(f"checkpoint_publish_command: {command[0]!r} is not an executable")
        targets.append(CommandTarget(command, config.log_origin, timeout_s))
    if not targets:
        return None
    return CheckpointPublisher(
        targets,
        registry,
        config.checkpoint_publish_retry_initial_s,
        config.checkpoint_publish_retry_max_s,
    )
