"""hearthnet.sdnotify against real AF_UNIX datagram sockets (a path and an abstract one)."""
from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from hearthnet.sdnotify import Notifier, socket_address, under_systemd, watchdog_interval
from tests.unit.xdg_fixture import isolated_xdg  # noqa: F401  (autouse: no real config read)


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


def test_systemd_link_ready_only_when_settled_and_watchdog_only_while_broker_answers(
        path_socket: tuple[socket.socket, str], tmp_path: Path) -> None:
    """supervise.SystemdLink's decisions, with the local API's answers scripted."""
    from hearthnet.config import load_config
    from hearthnet.supervise import SystemdLink

    sock, addr = path_socket
    link = SystemdLink(load_config(), Notifier({"NOTIFY_SOCKET": addr}), watchdog=10.0)
    answers: list[list[dict] | None] = []
    link.probe = lambda: answers.pop(0)  # type: ignore[method-assign]

    def w(name: str, healthy: bool, state: str = "RUNNING") -> dict:
        return {"name": name, "healthy": healthy, "state": state}

    def tick(answer: list[dict] | None) -> str:
        answers.append(answer)
        link.next_probe = 0.0  # due now
        link.tick()
        return sock.recv(4096).decode()

    assert tick(None) == "STATUS=starting: the local API does not answer yet"
    assert tick([w("broker", True), w("llm_00", False, "STARTING")]) == "STATUS=starting: 1/2 workers healthy"
    # a worker supervisord gave up on does not hold READY back; the status says so
    got = tick([w("broker", True), w("llm_00", False, "FATAL")])
    assert got == "READY=1\nSTATUS=degraded: 1/2 workers healthy; not: llm_00 FATAL"
    assert tick([w("broker", True), w("llm_00", True)]) == "WATCHDOG=1"
    assert sock.recv(4096).decode() == "STATUS=running: 2 workers healthy"
    # the broker does not answer the gateway, then the gateway does not answer: no ping
    assert tick([w("broker", False), w("llm_00", True)]).startswith("STATUS=degraded")
    assert tick(None) == "STATUS=the local API does not answer"
