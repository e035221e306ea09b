"""One serving process of `cachet proxy --workers N`, started by proxy/supervisor.py as
``python -m proxy.worker --index I --count N``.

What passes between them, over pipes the supervisor made:

- stdin, first line: the worker's configuration as JSON (`proxy.workers.config_to_json`), so
  secrets such as the purge token never appear on a command line or in the environment;
- stdout, one line ``READY <port>`` once it listens: the port of its private admin listener on
  127.0.0.1 (metrics, health and purge, which the supervisor scrapes and fans out);
- stdin reaching end of file: the supervisor closed it or died (SIGKILL included). The worker
  then stops as on SIGTERM (no new connections, in-flight responses finish), so a worker never
  serves on without its supervisor.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys

from proxy.config import ProxyConfig
from proxy.parent_pipe import STDIN, stop_at_end_of_stdin
from proxy.server import configure_logging, run_loop, serve
from proxy.workers import WorkerRole, config_from_json

READY_PREFIX = "READY "
MAX_CONFIG_BYTES = 1 << 20


def read_config_line(fd: int = STDIN) -> str:
    """The first line on ``fd``, read unbuffered (what follows is only ever end of file)."""
    data = bytearray()
    while not data.endswith(b"\n"):
        piece = os.read(fd, 65536)
        if not piece or len(data) > MAX_CONFIG_BYTES:
            raise ValueError("no configuration line from the supervisor")
        data += piece
    return data.decode("utf-8")


def _announce(address: tuple[str, int]) -> None:
    try:
        sys.stdout.write(f"{READY_PREFIX}{address[1]}\n")
        sys.stdout.flush()
    except OSError:  # the supervisor is gone: end of file on stdin stops this worker
        pass


async def _serve(config: ProxyConfig, role: WorkerRole) -> int:
    stop = asyncio.Event()
    stop_at_end_of_stdin(stop)
    return await serve(config, worker=role, stop=stop, on_ready=_announce)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m proxy.worker")
    parser.add_argument("--index", type=int, required=True)
    parser.add_argument("--count", type=int, required=True)
    args = parser.parse_args(argv)
    try:
        config = config_from_json(read_config_line())
    except (ValueError, KeyError, TypeError) as error:
        print(f"cachet proxy worker: {error}", file=sys.stderr)
        return 2
    role = WorkerRole(args.index, args.count)
    configure_logging(config, f"[{role.name}]")
    # The supervisor logs each purge once, with who asked; a worker's copy would repeat it.
    logging.getLogger("cachet.purge").setLevel(logging.WARNING)
    return run_loop(_serve(config, role))


if __name__ == "__main__":
    sys.exit(main())
