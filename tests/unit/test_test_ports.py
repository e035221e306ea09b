"""The test suite's own port allocator (tests/ports.py): CI once lost a start to a port that an
outgoing connection took between `bind(0)` and the server's bind."""

from __future__ import annotations

import socket

from tests.ports import _ephemeral_floor, free_port


def test_ports_come_from_below_the_ephemeral_range_and_do_not_repeat() -> None:
    ports = [free_port() for _ in range(200)]
    assert len(set(ports)) == len(ports)
    assert all(1024 < port < _ephemeral_floor() for port in ports)


def test_a_port_in_use_is_not_handed_out() -> None:
    port = free_port()
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", port))
        holder.listen()
        # The allocator walks on and wraps round its slice; it must skip the held port.
        assert port not in {free_port() for _ in range(50)}
