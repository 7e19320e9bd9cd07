"""hearthnet.sdnotify against real AF_UNIX datagram sockets (a path and an abstract one)."""
from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from hearthnet.sdnotify import Notifier, socket_address, under_systemd, watchdog_interval


@pytest.fixture
def path_socket(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(5)
    try:
        yield sock, str(path)
    finally:
        sock.close()


@pytest.fixture
def abstract_socket() -> Iterator[tuple[socket.socket, str]]:
    name = f"hearthnet-test-{os.getpid()}-{id(object())}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    sock.settimeout(5)
    try:
        yield sock, "@" + name
    finally:
        sock.close()


def messages(sock: socket.socket, n: int) -> list[str]:
    return [sock.recv(4096).decode() for _ in range(n)]


def test_ready_watchdog_stopping_reach_a_path_socket(path_socket: tuple[socket.socket, str]) -> None:
    sock, addr = path_socket
    n = Notifier({"NOTIFY_SOCKET": addr})
    assert n.enabled
    assert n.ready("6 workers healthy")
    assert n.watchdog()
    assert n.stopping()
    assert messages(sock, 3) == ["READY=1\nSTATUS=6 workers healthy", "WATCHDOG=1", "STOPPING=1"]


def test_abstract_address(abstract_socket: tuple[socket.socket, str]) -> None:
    sock, addr = abstract_socket
    assert socket_address({"NOTIFY_SOCKET": addr}) == "\0" + addr[1:]
    n = Notifier({"NOTIFY_SOCKET": addr})
    assert n.ready()
    assert n.watchdog()
    assert messages(sock, 2) == ["READY=1", "WATCHDOG=1"]


def test_status_is_one_line_and_sent_only_when_it_changes(path_socket: tuple[socket.socket, str]) -> None:
    sock, addr = path_socket
    n = Notifier({"NOTIFY_SOCKET": addr})
    n.status("starting:\n2/6 workers healthy")
    n.status("starting:\n2/6 workers healthy")  # unchanged: not sent again
    n.status("x" * 500)
    got = messages(sock, 2)
    assert got[0] == "STATUS=starting: 2/6 workers healthy"
    assert got[1] == "STATUS=" + "x" * 200
    sock.settimeout(0.2)
    with pytest.raises(socket.timeout):
        sock.recv(4096)


def test_no_socket_is_a_quiet_no_op(tmp_path: Path) -> None:
    assert not Notifier({}).enabled
    assert Notifier({}).ready() is False
    assert socket_address({"NOTIFY_SOCKET": "vsock:2:1234"}) is None
    # systemd went away: the send fails, the caller is told, nothing raises
    assert Notifier({"NOTIFY_SOCKET": str(tmp_path / "gone.sock")}).watchdog() is False


def test_watchdog_interval_is_half_of_watchdog_usec() -> None:
    assert watchdog_interval({"WATCHDOG_USEC": "20000000"}) == 10.0
    assert watchdog_interval({"WATCHDOG_USEC": "20000000", "WATCHDOG_PID": "42"}, pid=42) == 10.0
    assert watchdog_interval({"WATCHDOG_USEC": "20000000", "WATCHDOG_PID": "43"}, pid=42) is None
    assert watchdog_interval({}) is None
    assert watchdog_interval({"WATCHDOG_USEC": "soon"}) is None
    assert watchdog_interval({"WATCHDOG_USEC": "0"}) is None


def test_under_systemd() -> None:
    assert under_systemd({"INVOCATION_ID": "abc"})
    assert under_systemd({"NOTIFY_SOCKET": "/run/systemd/notify"})
    assert not under_systemd({})
