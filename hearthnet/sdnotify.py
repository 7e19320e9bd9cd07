"""sd_notify(3) without libsystemd: one datagram per message to $NOTIFY_SOCKET.

systemd hands a Type=notify service the address of its notification socket in
NOTIFY_SOCKET: a file system path, or an abstract socket written with a leading '@'.
A message is newline-separated `KEY=VALUE` lines (READY=1, STATUS=..., WATCHDOG=1,
STOPPING=1). With WatchdogSec= set, systemd also passes WATCHDOG_USEC (and WATCHDOG_PID,
the process expected to ping); the service must send WATCHDOG=1 more often than that.

A notification that cannot be delivered is dropped and reported by the return value:
the node keeps running whatever happens to systemd's socket.
"""
from __future__ import annotations

import os
import socket
from collections.abc import Mapping

MAX_STATUS_CHARS = 200  # systemctl status shows one line; keep it readable


def under_systemd(env: Mapping[str, str] | None = None) -> bool:
    """True when systemd started this process (a unit's ExecStart)."""
    env = os.environ if env is None else env
    return bool(env.get("NOTIFY_SOCKET") or env.get("INVOCATION_ID"))


def socket_address(env: Mapping[str, str] | None = None) -> str | None:
    """The AF_UNIX address to send to: '@name' becomes the abstract '\\0name'. None when
    there is no socket or it is of a kind we do not speak (e.g. systemd's vsock:)."""
    env = os.environ if env is None else env
    addr = env.get("NOTIFY_SOCKET") or ""
    if addr.startswith("@"):
        return "\0" + addr[1:]
    if addr.startswith("/"):
        return addr
    return None


def watchdog_interval(env: Mapping[str, str] | None = None, pid: int | None = None) -> float | None:
    """Seconds between WATCHDOG=1 pings (half of WATCHDOG_USEC, as sd_watchdog_enabled(3)
    advises), or None when no watchdog is asked of this process."""
    env = os.environ if env is None else env
    try:
        usec = int(env.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    if usec <= 0:
        return None
    want_pid = env.get("WATCHDOG_PID")
    if want_pid and want_pid != str(os.getpid() if pid is None else pid):
        return None  # the watchdog belongs to another process of the unit
    return usec / 2_000_000


class Notifier:
    """Sends notifications to systemd; a no-op when not started by systemd."""

    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        self.address = socket_address(env)
        self.last_status: str | None = None

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def notify(self, *lines: str) -> bool:
        """Send one message made of `lines`; True if it was handed to the socket."""
        if self.address is None:
            return False
        payload = "\n".join(lines).encode("utf-8", "replace")
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.sendto(payload, self.address)
        except OSError:
            return False  # systemd gone or the socket full: never stop the node for it
        return True

    def ready(self, status: str | None = None) -> bool:
        return self.notify("READY=1", *self._status_lines(status))

    def status(self, text: str) -> bool:
        """STATUS=text, sent only when it changed (systemctl status shows the latest)."""
        if text == self.last_status:
            return True
        return self.notify(*self._status_lines(text))

    def watchdog(self) -> bool:
        return self.notify("WATCHDOG=1")

    def stopping(self, status: str | None = None) -> bool:
        return self.notify("STOPPING=1", *self._status_lines(status))

    def _status_lines(self, text: str | None) -> list[str]:
        if text is None:
            return []
        one_line = " ".join(text.split())[:MAX_STATUS_CHARS]
        self.last_status = text
        return [f"STATUS={one_line}"]
