"""Processes the hit bench starts: tool install, nginx config, start/wait/stop, cache warm-up."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import IO

REPO_ROOT = Path(__file__).resolve().parent.parent
TEMPLATE_NAME = "nginx-anchor.conf.template"
TOOLS = {"nginx": ("nginx-light", "nginx"), "wrk": ("wrk",)}


class BenchError(RuntimeError):
    """The bench cannot go on; the message is the one-line reason."""


def find_binary(name: str) -> str | None:
    """Find `name` on PATH or in /usr/sbin (root's nginx is there)."""
    found = shutil.which(name)
    if found is None and Path("/usr/sbin", name).exists():
        found = f"/usr/sbin/{name}"
    return found


def has_candidate(package: str) -> bool:
    """Whether apt can install `package` (its policy shows a candidate version)."""
    policy = subprocess.run(
        ["apt-cache", "policy", package], capture_output=True, text=True, check=False, timeout=60
    )
    return "Candidate:" in policy.stdout and "Candidate: (none)" not in policy.stdout


def ensure_tools(allow_install: bool) -> None:
    """Install Debian's nginx and wrk with apt-get when missing (apt-get update once first)."""
    missing = [name for name in TOOLS if find_binary(name) is None]
    for name in ("taskset", "apt-get") if missing else ("taskset",):
        if find_binary(name) is None:
            raise BenchError(f"{name} not found")
    if not missing:
        return
    if not allow_install or os.geteuid() != 0:
        raise BenchError(f"missing {', '.join(missing)}; run as root or apt-get install them")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update"], check=True, env=env, timeout=600)
    for name in missing:
        package = next((p for p in TOOLS[name] if has_candidate(p)), TOOLS[name][-1])
        subprocess.run(["apt-get", "install", "-y", package], check=True, env=env, timeout=900)
        if find_binary(name) is None:
            raise BenchError(f"installed {package} but {name} is still missing")


def find_template(explicit: str | None) -> Path:
    """Locate the nginx anchor template: explicit, ../shared/bench/, then /work/shared/bench/."""
    candidates = [Path(explicit)] if explicit else []
    candidates += [
        REPO_ROOT.parent / "shared" / "bench" / TEMPLATE_NAME,
        Path("/work/shared/bench") / TEMPLATE_NAME,
    ]
    for path in candidates:
        if path.is_file():
            return path
    raise BenchError(f"nginx template not found in {', '.join(map(str, candidates))}")


def render_nginx_conf(template: Path, run_dir: Path, origin_port: int, nginx_port: int) -> Path:
    """Fill the template's placeholders and write run_dir/nginx.conf."""
    text = template.read_text()
    for key, value in (
        ("@RUNDIR@", str(run_dir)),
        ("@ORIGIN_PORT@", str(origin_port)),
        ("@NGINX_PORT@", str(nginx_port)),
    ):
        text = text.replace(key, value)
    run_dir.mkdir(parents=True, exist_ok=True)
    run_dir.chmod(0o755)  # nginx's worker drops to an unprivileged user and must traverse it
    conf = run_dir / "nginx.conf"
    conf.write_text(text)
    return conf


def nginx_command(conf: Path) -> list[str]:
    """The nginx command line for a rendered config, in the foreground."""
    nginx = find_binary("nginx") or "nginx"
    run_dir = conf.parent
    error_log = str(run_dir / "error.log")
    return [nginx, "-p", str(run_dir), "-c", str(conf), "-e", error_log, "-g", "daemon off;"]


def assert_port_free(port: int) -> None:
    """Fail early and clearly when something already listens on 127.0.0.1:port."""
    with socket.socket() as probe:
        if probe.connect_ex(("127.0.0.1", port)) == 0:
            raise BenchError(f"127.0.0.1:{port} is already in use; pick another --base-port")


class ProcessGroup:
    """Every process the bench started, each in its own session, stopped by its own id."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.running: list[tuple[str, subprocess.Popen[bytes], IO[bytes]]] = []

    def start(self, name: str, command: list[str], cpu: int | None, cwd: Path) -> int:
        """Start `command` (pinned to `cpu` when given), logging to log_dir/name.log."""
        pinned = ["taskset", "-c", str(cpu), *command] if cpu is not None else command
        log = (self.log_dir / f"{name}.log").open("wb")
        proc = subprocess.Popen(
            pinned, stdout=log, stderr=subprocess.STDOUT, cwd=cwd, start_new_session=True
        )
        self.running.append((name, proc, log))
        return proc.pid

    def wait_listening(self, name: str, port: int, timeout_s: float) -> None:
        """Wait until 127.0.0.1:port accepts connections; fail if the process exits first."""
        proc = next(p for n, p, _ in self.running if n == name)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise BenchError(f"{name} exited {proc.returncode}: {self.log_tail(name)}")
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    return
            time.sleep(0.05)
        raise BenchError(f"{name} did not listen on 127.0.0.1:{port} within {timeout_s}s")

    def log_tail(self, name: str) -> str:
        """The last line of a process's log, for one-line error messages."""
        lines = (self.log_dir / f"{name}.log").read_text(errors="replace").strip().splitlines()
        return lines[-1] if lines else "(no output)"

    def stop_all(self) -> None:
        """SIGTERM each started session by its id, then SIGKILL what is left after 5 s."""
        for _, proc, _ in self.running:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
        for _, proc, log in self.running:
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=5)
            log.close()
        self.running.clear()


def fetch_cache_status(port: int, path: str) -> str:
    """GET `path`, read the body, return X-Cache-Status (empty if absent)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        response.read()
        if response.status != 200:
            raise BenchError(f"GET 127.0.0.1:{port}{path} answered {response.status}")
        return response.getheader("X-Cache-Status", "")
    finally:
        conn.close()


def warm_until_hit(port: int, path: str, max_tries: int = 50) -> int:
    """Request `path` until the cache says HIT; return how many requests that took."""
    for attempt in range(1, max_tries + 1):
        if fetch_cache_status(port, path).upper() == "HIT":
            return attempt
        time.sleep(0.05)
    raise BenchError(f"127.0.0.1:{port}{path} never showed X-Cache-Status: HIT")


def read_origin_counts(port: int) -> dict[str, int]:
    """Object requests the bench origin on `port` has served, per path (queries not counted)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", "/__count")
        payload = json.loads(conn.getresponse().read())
    finally:
        conn.close()
    return {str(path): int(count) for path, count in payload["paths"].items()}


BATCHES_PATH = "/v1/batches"  # bench/origin.py's coordinator stand-in (hits.py --forward)


def read_origin_count(port: int) -> int:
    """Total object requests the bench origin on `port` has served (not batches posted)."""
    return sum(n for path, n in read_origin_counts(port).items() if path != BATCHES_PATH)


def read_batches_posted(port: int) -> int:
    """Batches posted to the bench origin's coordinator stand-in."""
    return read_origin_counts(port).get(BATCHES_PATH, 0)
