"""Talks to the node's supervisord over its XML-RPC unix socket.

Besides reading state, `poke()` matters for speed: supervisord's loop sleeps up to a
second in poll() and a signal does not wake it, but a request on its socket does. Poking
it right after a worker dies (or after asking it to stop) makes it reap, restart or exit
within milliseconds instead of on its next one-second tick.
"""
from __future__ import annotations

import threading
import time
import xmlrpc.client
from pathlib import Path
from typing import Any

from hearthnet.unixhttp import UnixHTTPConnection

GROUP = "hearthnet"


class UnixTransport(xmlrpc.client.Transport):
    """XML-RPC over supervisord's unix socket. Not supervisor.xmlrpc's transport: importing
    the supervisor package pulls configparser, zipfile and importlib.metadata (~3 MiB) into
    every process that only wants to ask supervisord something (gateway, broker, `run`)."""

    def __init__(self, socket_path: str) -> None:
        super().__init__()
        self.socket_path = socket_path

    def make_connection(self, host: Any) -> UnixHTTPConnection:
        return UnixHTTPConnection(self.socket_path)

    def request(self, host: Any, handler: str, request_body: bytes, verbose: bool = False) -> Any:
        try:
            return super().request(host, handler, request_body, verbose)
        finally:
            self.close()  # one request per connection, as supervisor's own transport does


class SupervisorRpc:
    def __init__(self, socket_path: Path) -> None:
        self.socket_path = socket_path

    def _proxy(self) -> Any:
        transport = UnixTransport(str(self.socket_path))
        return xmlrpc.client.ServerProxy("http://127.0.0.1", transport=transport)

    def processes(self) -> list[dict[str, Any]]:
        """getAllProcessInfo; an empty list when supervisord does not answer."""
        try:
            return list(self._proxy().supervisor.getAllProcessInfo())
        except (OSError, xmlrpc.client.Error):
            return []

    def log_tail(self, name: str, group: str = GROUP, nbytes: int = 2000) -> list[str]:
        try:
            text, _, _ = self._proxy().supervisor.tailProcessStdoutLog(f"{group}:{name}", 0, nbytes)
        except (OSError, xmlrpc.client.Error):
            return []
        lines = text.splitlines()
        return lines[1:][-10:] if len(text) >= nbytes else lines[-10:]

    def poke(self) -> bool:
        """One cheap request that wakes supervisord's loop; False if it is gone."""
        try:
            self._proxy().supervisor.getState()
            return True
        except (OSError, xmlrpc.client.Error):
            return False

    def shutdown(self) -> bool:
        try:
            self._proxy().supervisor.shutdown()
            return True
        except (OSError, xmlrpc.client.Error):
            return False

    def restart_program(self, name: str, group: str = GROUP) -> bool:
        """Stop then start one program (waiting for each), so it re-reads config.toml;
        False when supervisord does not answer or refuses (e.g. no such program)."""
        proxy = self._proxy().supervisor
        full = f"{group}:{name}"
        try:
            if proxy.getProcessInfo(full).get("statename") in ("RUNNING", "STARTING", "BACKOFF"):
                proxy.stopProcess(full, True)
            return bool(proxy.startProcess(full, True))
        except (OSError, xmlrpc.client.Error):
            return False

    def restart_all(self) -> bool:
        """supervisord re-reads its config and restarts every program in place (its own
        process, socket, run dir and the owner token stay)."""
        try:
            return bool(self._proxy().supervisor.restart())
        except (OSError, xmlrpc.client.Error):
            return False

    def poke_for(self, seconds: float, interval: float = 0.05) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and self.poke():
            time.sleep(interval)

    def poke_in_background(self, seconds: float = 2.0) -> None:
        threading.Thread(target=self.poke_for, args=(seconds,), daemon=True).start()
