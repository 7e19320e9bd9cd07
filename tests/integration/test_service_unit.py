"""`hearthnet run` under systemd, played by the test: NOTIFY_SOCKET points at the test's
own AF_UNIX datagram socket and WATCHDOG_USEC asks for pings. Plus: after a real node
ran, everything under its log dir is private (files 0600, dirs 0700)."""
from __future__ import annotations

import os
import signal
import socket
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

WATCHDOG_USEC = 1_000_000  # pings every 0.5 s
RECV_TIMEOUT = 60.0


@pytest.fixture
def notify_socket() -> Iterator[tuple[socket.socket, str]]:
    path = f"/tmp/hn-notify-{os.getpid()}.sock"  # short: AF_UNIX paths are limited
    Path(path).unlink(missing_ok=True)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(RECV_TIMEOUT)
    try:
        yield sock, path
    finally:
        sock.close()
        Path(path).unlink(missing_ok=True)


def next_message(sock: socket.socket) -> dict[str, str]:
    raw = sock.recv(4096).decode()
    return dict(line.split("=", 1) for line in raw.splitlines())


def until(sock: socket.socket, key: str, value: str | None = None) -> tuple[dict[str, str], list[dict[str, str]]]:
    """Read messages until one has `key` (= `value`); returns it and the ones before."""
    before = []
    while True:
        msg = next_message(sock)
        if key in msg and (value is None or msg[key] == value):
            return msg, before
        before.append(msg)


def test_ready_after_all_workers_healthy_then_watchdog_then_stopping(make_node, notify_socket) -> None:
    sock, path = notify_socket
    node = make_node("anchor")
    node.init()
    node.env.update({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": str(WATCHDOG_USEC)})
    node.start(wait_workers=())

    ready, before = until(sock, "READY")
    # the moment READY arrives, the node's own status has every worker healthy
    workers = node.api("/api/v1/status")["workers"]
    assert workers and all(w["healthy"] for w in workers), workers
    assert {w["program"] for w in workers} >= {"broker", "gateway", "ledger", "discovery", "llm"}
    assert ready["STATUS"] == f"running: {len(workers)} workers healthy"
    assert before and all(m.get("STATUS", "").startswith("starting") for m in before), before
    assert not any("WATCHDOG" in m for m in before)

    for _ in range(3):
        until(sock, "WATCHDOG", "1")

    # a hung gateway (its local API stops answering): the pings stop, so systemd would
    # restart the node; they resume when it answers again
    gateway = next(w["pid"] for w in workers if w["name"] == "gateway")
    os.kill(gateway, signal.SIGSTOP)
    try:
        until(sock, "STATUS", "the local API does not answer")
        sock.settimeout(3 * WATCHDOG_USEC / 1e6)
        with pytest.raises(socket.timeout):
            msg = next_message(sock)
            pytest.fail(f"a notification while the gateway hung: {msg}")
    finally:
        os.kill(gateway, signal.SIGCONT)
    sock.settimeout(RECV_TIMEOUT)
    until(sock, "WATCHDOG", "1")

    node.stop(signal.SIGTERM)
    assert node.proc is not None and node.proc.returncode == 0, node.proc_output()
    stopping, _ = until(sock, "STOPPING", "1")
    assert node.leftovers() == []


def test_nothing_notified_outside_systemd_and_children_never_see_the_socket(make_node, notify_socket) -> None:
    """The tree does not inherit NOTIFY_SOCKET: only `run` (the unit's main process,
    NotifyAccess=main) talks to systemd."""
    sock, path = notify_socket
    node = make_node("anchor")
    node.init()
    node.env.update({"NOTIFY_SOCKET": path})
    node.start(wait_workers=("broker", "gateway"))
    try:
        until(sock, "READY")
        import psutil

        children = psutil.Process(node.proc.pid).children(recursive=True)
        assert children
        for child in children:
            assert "NOTIFY_SOCKET" not in child.environ(), child.cmdline()
    finally:
        node.stop()


def test_log_dir_is_private_after_a_run(make_node) -> None:
    node = make_node("private")
    node.init()
    # what an older version left: world-readable files and dirs
    node.log_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(node.log_dir, 0o755)
    old = node.log_dir / "gateway.log.1"
    old.write_text("{}\n")
    os.chmod(old, 0o644)
    node.start(wait_workers=("broker", "gateway", "ledger", "discovery", "llm"))
    node.cli("status", "--json")
    node.stop()

    entries = [node.log_dir, *node.log_dir.rglob("*")]
    names = {p.name for p in entries}
    assert {"supervisord.log", "broker.log", "gateway.log", "llm_00.log"} <= names, names
    for p in entries:
        mode = stat.S_IMODE(p.lstat().st_mode)
        assert mode == (0o700 if p.is_dir() else 0o600), f"{p}: {oct(mode)}"
