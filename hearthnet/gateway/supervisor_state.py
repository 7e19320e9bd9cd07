"""Reads supervisord's view of the process tree over its XML-RPC unix socket."""
from __future__ import annotations

import xmlrpc.client
from pathlib import Path
from typing import Any

from supervisor.xmlrpc import SupervisorTransport

GROUP = "hearthnet"


class SupervisorState:
    def __init__(self, socket_path: Path) -> None:
        self.socket_path = socket_path

    def _proxy(self) -> Any:
        transport = SupervisorTransport(None, None, f"unix://{self.socket_path}")
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
