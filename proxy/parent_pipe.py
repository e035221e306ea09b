"""A child process that must not outlive its parent: the parent holds the write end of a pipe on
the child's stdin, and end of file there (the parent closed it, or died, even by SIGKILL) stops
the child. Used by the records process and by `--workers` serving processes."""

from __future__ import annotations

import asyncio
import os

STDIN = 0


def stop_at_end_of_stdin(stop: asyncio.Event) -> None:
    """Set ``stop`` when stdin reaches end of file (whatever else arrives there is ignored)."""
    loop = asyncio.get_running_loop()

    def readable() -> None:
        try:
            data = os.read(STDIN, 4096)
        except OSError:
            data = b""
        if not data:
            loop.remove_reader(STDIN)
            stop.set()

    loop.add_reader(STDIN, readable)
