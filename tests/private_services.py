"""A test's own NATS server and PostgreSQL cluster, which it may kill and restart (issue 9, faults).

The machine's services on 4222 and 5432 are shared by every test run on this machine, so a test
that restarts a service under load starts its own: ``PrivateNats`` (``nats-server -js`` on a free
port with its own store folder) and ``PrivatePostgres`` (``initdb`` + ``pg_ctl`` on a free port
with its own socket folder; both run as the ``postgres`` user, because initdb refuses root).
Each restarts on the same port and the same data, as an operator's restart would; ``kill()``
is a SIGKILL with no goodbye, so JetStream and PostgreSQL recover from their own files.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from tests.ports import free_port

HOST = "127.0.0.1"
NATS_BINARY = "/usr/sbin/nats-server"
PG_BIN = Path("/usr/lib/postgresql/15/bin")
START_TIMEOUT_S = 30.0


class ServiceUnavailable(Exception):
    """This machine cannot run the private service; the message says why (a skip reason)."""


def wait_until(predicate: Callable[[], bool], timeout_s: float, what: str) -> None:
    """Poll ``predicate()`` until true; raise TimeoutError naming ``what`` (a bound, not a test)."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} within {timeout_s:.0f} s")
        time.sleep(0.05)


def is_listening(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=0.5):
            return True
    except OSError:
        return False


def process_exists(pid: int) -> bool:
    """Whether ``pid`` is still in the process table, a zombie included: a new postmaster's
    lock-file check takes an unreaped postmaster for a running one (init reaps orphans here
    only after a second or two)."""
    return Path(f"/proc/{pid}").exists()


class PrivateNats:
    """``nats-server -js`` on a free port; ``kill()`` then ``start()`` keeps the port and the
    store folder, so streams, consumers and the duplicate window come back from disk."""

    def __init__(self, root: Path) -> None:
        binary = shutil.which("nats-server") or NATS_BINARY
        if not Path(binary).exists():
            raise ServiceUnavailable("nats-server is not installed on this machine")
        self.binary, self.port = binary, free_port()
        self.store, self.log = root / "jetstream", root / "nats.log"
        self.store.mkdir(parents=True, exist_ok=True)
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://{HOST}:{self.port}"

    def start(self) -> None:
        command = [self.binary, "-a", HOST, "-p", str(self.port), "-js", "-sd", str(self.store)]
        with self.log.open("ab") as sink:
            process = subprocess.Popen(command, stdout=sink, stderr=sink)
        self.process = process
        with contextlib.suppress(TimeoutError):
            wait_until(
                lambda: process.poll() is not None or is_listening(self.port),
                START_TIMEOUT_S,
                "nats-server to listen",
            )
        if process.poll() is not None or not is_listening(self.port):
            self.kill()
            tail = self.log.read_text(errors="replace")[-300:]
            raise ServiceUnavailable(f"nats-server did not start on {self.port}: {tail}")

    def kill(self) -> None:
        """SIGKILL: no flush, no goodbye to clients."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()


class PrivatePostgres:
    """A PostgreSQL cluster of its own in a folder owned by ``postgres`` (trust auth, TCP on a
    free port of 127.0.0.1); ``restart()`` is ``pg_ctl restart -m fast``, ``kill()`` SIGKILLs
    the postmaster (its backends exit on their own), ``start()`` recovers from the WAL."""

    def __init__(self) -> None:
        if not (PG_BIN / "initdb").exists() or shutil.which("runuser") is None:
            raise ServiceUnavailable(f"no initdb in {PG_BIN} or no runuser on this machine")
        try:
            owner = pwd.getpwnam("postgres")
        except KeyError:
            raise ServiceUnavailable("no postgres user to run initdb as") from None
        self.root = Path(tempfile.mkdtemp(prefix="cachet-pg-"))
        os.chown(self.root, owner.pw_uid, owner.pw_gid)
        self.data, self.sockets, self.log = self.root / "data", self.root / "s", self.root / "log"
        self.port = free_port()
        self._pg("initdb", "-D", str(self.data), "-U", "postgres", "-A", "trust",
                 "--no-sync", "-E", "UTF8", "--locale=C")  # fmt: skip
        os.mkdir(self.sockets)
        os.chown(self.sockets, owner.pw_uid, owner.pw_gid)

    @property
    def dsn(self) -> str:
        return f"postgresql://postgres@{HOST}:{self.port}/postgres"

    def _pg(self, tool: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        command = ["runuser", "-u", "postgres", "--", str(PG_BIN / tool), *args]
        done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
        if check and done.returncode != 0:
            reason = (done.stderr or done.stdout).strip()[-300:]
            raise ServiceUnavailable(f"{tool} failed ({done.returncode}): {reason}")
        return done

    def _ctl(self, action: str, *extra: str) -> None:
        options = f"-p {self.port} -k {self.sockets} -c listen_addresses={HOST}"
        self._pg("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w",
                 "-t", str(int(START_TIMEOUT_S)), "-o", options, *extra, action)  # fmt: skip

    def start(self) -> None:
        self._ctl("start")

    def restart(self) -> None:
        """``pg_ctl restart -m fast``: sessions are terminated, transactions in flight roll back."""
        self._ctl("restart", "-m", "fast")

    def stop(self) -> None:
        """``pg_ctl stop -m fast``: a clean shutdown; clients get refused until ``start()``."""
        self._pg("pg_ctl", "-D", str(self.data), "-w", "-m", "fast", "stop")

    def postmaster_pid(self) -> int:
        return int((self.data / "postmaster.pid").read_text().split("\n", 1)[0])

    def kill(self) -> None:
        """SIGKILL the postmaster and wait until it and its children are gone (a new postmaster
        refuses to start while they hold the old shared memory or the lock file's PID)."""
        pid = self.postmaster_pid()
        children = [child for child in _all_pids() if _parent_of(child) == pid]
        os.kill(pid, signal.SIGKILL)
        wait_until(
            lambda: not any(process_exists(p) for p in [pid, *children]),
            START_TIMEOUT_S,
            "the killed postmaster's backends to exit",
        )

    def destroy(self) -> None:
        with contextlib.suppress(Exception):
            self._pg("pg_ctl", "-D", str(self.data), "-m", "immediate", "stop", check=False)
        shutil.rmtree(self.root, ignore_errors=True)


def _all_pids() -> list[int]:
    return [int(name) for name in os.listdir("/proc") if name.isdigit()]


def _parent_of(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return None


@contextlib.contextmanager
def private_nats(root: Path) -> Iterator[PrivateNats]:
    server = PrivateNats(root)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@contextlib.contextmanager
def private_postgres() -> Iterator[PrivatePostgres]:
    cluster = PrivatePostgres()
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.destroy()
