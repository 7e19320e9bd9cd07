"""Lean processes at run time (README "Lean processes", bench/memory.py): what the running
gateway and discovery workers of a started node have loaded, read from /proc/<pid>/maps,
so an import that only happens after start (a handler, a background task) is caught too.
tests/unit/test_import_hygiene.py checks the imports themselves."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from hearthnet.testing.nodes import Node


def mapped(pid: int) -> set[str]:
    """Top-level packages of the shared objects a process has mapped from site-packages."""
    out = set()
    for line in Path(f"/proc/{pid}/maps").read_text().splitlines():
        path = line.split()[-1] if len(line.split()) >= 6 else ""
        if "site-packages/" in path and path.endswith(".so"):
            out.add(path.split("site-packages/", 1)[1].split("/", 1)[0])
    return out


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Any:
    n = Node(tmp_path_factory.mktemp("lean"), "lean")
    n.init()
    try:
        n.start()
        n.wait_healthy(("broker", "gateway", "discovery", "ledger"))
        yield n
    finally:
        n.cleanup()


def pid_of(node: Node, program: str) -> int:
    status = node.api("/api/v1/status")
    return next(w["pid"] for w in status["workers"] if w["program"] == program and w.get("pid"))


def test_running_discovery_holds_neither_aiohttp_nor_cryptography_nor_zeroconf(node: Node) -> None:
    node.api("/api/v1/status")  # a round of requests first: nothing loads later either
    libs = mapped(pid_of(node, "discovery"))
    assert "zmq" in libs or "pyzmq.libs" in libs  # the probe reads real mappings
    assert not libs & {"aiohttp", "yarl", "multidict", "cryptography", "zeroconf"}


def test_running_gateway_holds_no_cryptography(node: Node) -> None:
    node.api("/api/v1/status")
    libs = mapped(pid_of(node, "gateway"))
    assert "aiohttp" in libs
    assert "cryptography" not in libs
