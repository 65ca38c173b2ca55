"""The suite's own guard: a test that tries to leave the machine fails at once."""

from __future__ import annotations

import socket

import pytest


def test_connections_off_loopback_are_refused() -> None:
    with socket.socket() as sock, pytest.raises(ConnectionRefusedError, match="loopback"):
        sock.connect(("192.0.2.1", 80))  # TEST-NET-1, never routable


def test_loopback_is_allowed(free_port: int) -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", free_port))
        server.listen()
        with socket.socket() as client:
            client.connect(("127.0.0.1", free_port))
