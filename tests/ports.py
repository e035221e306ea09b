"""Ports for the servers tests start on 127.0.0.1."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path

# Ports for servers a test starts later come from below the kernel's ephemeral range. A port
# the kernel hands out for `bind(0)` is free only until the next outgoing connection, which
# may take it as its local port before the server binds (CI saw "address already in use").
# Ports below the range are never chosen for outgoing connections; each xdist worker takes
# its own slice of them, so two workers never hand out the same port either.
_PORT_FLOOR = 20000


def _ephemeral_floor() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def _worker_ports() -> Iterator[int]:
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    index = int(worker[2:]) if worker[2:].isdigit() else 0
    workers = max(int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1") or 1), index + 1)
    span = (_ephemeral_floor() - _PORT_FLOOR) // workers
    first = _PORT_FLOOR + index * span
    # A random start keeps two test runs on one machine apart too.
    offset = int.from_bytes(os.urandom(2), "big") % span
    while True:
        yield first + offset
        offset = (offset + 1) % span


_ports = _worker_ports()


def free_port() -> int:
    """A port on 127.0.0.1 that is free now and that no outgoing connection will take."""
    for _ in range(1000):
        port = next(_ports)
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port below the ephemeral range")
