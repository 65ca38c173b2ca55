"""Shared fixtures. Tests talk to loopback only: every server here binds 127.0.0.1, and a
guard refuses any connection from the test process to another address."""

from __future__ import annotations

import contextlib
import ipaddress
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.processes import free_port as _free_port

_connect = socket.socket.connect
_connect_ex = socket.socket.connect_ex
# Private links a test made itself (veth pairs between network namespaces), allowed while it runs.
_links: set[ipaddress.IPv4Network] = set()


@contextlib.contextmanager
def allow_link(network: str) -> Iterator[None]:
    """Let the test connect to ``network`` (a 10.77.x.x link it created and will remove) too."""
    net = ipaddress.IPv4Network(network)
    assert net.subnet_of(ipaddress.IPv4Network("10.77.0.0/16")), "only the tests' own 10.77.x.x links"
    _links.add(net)
    try:
        yield
    finally:
        _links.discard(net)


def _check(address: Any) -> None:
    if isinstance(address, tuple) and address:
        host = str(address[0])
        try:
            ip = ipaddress.ip_address(host.split("%")[0])
            loopback = ip.is_loopback or any(ip in net for net in _links)
        except ValueError:
            loopback = host == "localhost"
        if not loopback:
            raise ConnectionRefusedError(f"tests may only connect to loopback, not {host}")


def _guarded_connect(self: socket.socket, address: Any) -> None:
    _check(address)
    _connect(self, address)


def _guarded_connect_ex(self: socket.socket, address: Any) -> int:
    _check(address)
    return _connect_ex(self, address)


@pytest.fixture(autouse=True)
def loopback_only() -> Iterator[None]:
    """No test reaches the network: connections leave the machine only by mistake."""
    socket.socket.connect = _guarded_connect  # type: ignore[method-assign,assignment]
    socket.socket.connect_ex = _guarded_connect_ex  # type: ignore[method-assign,assignment]
    try:
        yield
    finally:
        socket.socket.connect = _connect  # type: ignore[method-assign]
        socket.socket.connect_ex = _connect_ex  # type: ignore[method-assign]


@pytest.fixture
def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    return _free_port()


class Disk:
    """A directory a test can make read-only, full, or writable again.

    As root, permission bits do not stop writes, so the directory is its own small
    tmpfs and read-only means a read-only remount; otherwise it is a plain
    directory and read-only means ``chmod``. Filling needs the tmpfs.
    """

    def __init__(self, path: Any, mounted: bool) -> None:
        self.path = path
        self.mounted = mounted
        self._filler = path / ".filler"

    def _remount(self, mode: str) -> None:
        import subprocess

        subprocess.run(["mount", "-o", f"remount,{mode}", str(self.path)], check=True, capture_output=True)

    def read_only(self) -> None:
        if self.mounted:
            self._remount("ro")
        else:
            self.path.chmod(0o555)
            for child in self.path.iterdir():
                child.chmod(0o444)

    def writable(self) -> None:
        if self.mounted:
            self._remount("rw")
        else:
            self.path.chmod(0o755)
            for child in self.path.iterdir():
                child.chmod(0o644)

    def fill(self) -> None:
        """Take every free byte (only on the tmpfs)."""
        if not self.mounted:
            pytest.skip("filling a disk needs a tmpfs mount (run as root)")
        import errno
        import os

        fd = os.open(self._filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        try:
            for size in (65536, 4096, 512, 1):
                try:
                    while True:
                        os.write(fd, b"\0" * size)
                except OSError as exc:
                    if exc.errno != errno.ENOSPC:
                        raise
        finally:
            os.close(fd)

    def free(self) -> None:
        self._filler.unlink(missing_ok=True)


@pytest.fixture
def disk(tmp_path: Any) -> Iterator[Disk]:
    """A 512 KB directory (a tmpfs when running as root; else a chmod-able directory)."""
    import os
    import subprocess

    path = tmp_path / "disk"
    path.mkdir()
    mounted = False
    if os.geteuid() == 0:
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", str(path)], capture_output=True
        )
        if done.returncode != 0:
            pytest.skip(f"as root, a read-only directory needs a tmpfs mount: {done.stderr.decode().strip()}")
        mounted = True
    disk = Disk(path, mounted)
    try:
        yield disk
    finally:
        if mounted:
            subprocess.run(["umount", "-l", str(path)], capture_output=True)
        else:
            disk.writable()


@pytest.fixture
def redis_url(tmp_path: Path) -> Iterator[str]:
    """A private redis-server on a random loopback port, stopped after the test."""
    redis = shutil.which("redis-server") or "/usr/bin/redis-server"
    if not Path(redis).exists():
        pytest.skip("redis-server is not installed (apt-get install -y redis-server)")
    port = _free_port()
    proc = subprocess.Popen(
        [
            redis,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(tmp_path),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 5
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        proc.wait(timeout=5)
