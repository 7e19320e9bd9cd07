"""A peer's manifest capabilities become broker routes only when they have the contract's
shape: `"max_concurrent": "lots"` used to end the gateway's peer watcher for good (issue
6). Now the bad entry is skipped with one log line, the peer's other capabilities are
routed, and the next peer event is applied as usual."""
from __future__ import annotations

import asyncio
import logging
import time

from hearthnet.gateway.peers import PeerProxies
from tests.unit.broker.test_broker import bench  # noqa: F401  (fixture)

GOOD = {"name": "experimental.echo", "version": "1.0", "stability": "experimental",
        "schema_hash": "blake3:" + "0" * 64, "params": {}, "max_concurrent": 2}


def _peer(name: str, caps: list) -> dict:
    return {"node_id": f"ed25519:{name}", "node_id_short": f"ed25519:{name[:4]}", "source": "manual",
            "display_name": name, "endpoint": {"host": "127.0.0.1", "port": 7080},
            "manifest": {"capabilities": caps}}


def _wait(bench, name: str) -> None:  # noqa: F811
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        w = bench.broker.workers.get(name)
        if w is not None and w.alive:
            return
        time.sleep(0.02)
    raise AssertionError(f"{name} never announced")


def test_bad_capability_entries_are_skipped_and_later_peers_still_added(bench, caplog):  # noqa: F811
    caplog.set_level(logging.WARNING, "hearthnet.gateway.peers")
    lots = {**GOOD, "name": "llm.chat", "max_concurrent": "lots"}

    async def go():
        proxies = PeerProxies(bench.w, client=None)
        try:
            results = [
                await proxies.apply("added", _peer("mixed", [lots, GOOD, "junk", {**GOOD, "name": "Bad Name"}])),
                await proxies.apply("added", "not a peer"),
                await proxies.apply("added", {"node_id": ["x"]}),
                await proxies.apply("updated", _peer("noendpoint", [GOOD]) | {"endpoint": None}),
                await proxies.apply("added", _peer("later", [GOOD])),
            ]
            await asyncio.sleep(0)
            _wait(bench, "peer:ed25519:mixe")
            _wait(bench, "peer:ed25519:late")
            return results, {n: set(w.caps) for n, w in bench.broker.workers.items()}
        finally:
            await proxies.close()

    results, caps = asyncio.run(go())
    assert results == [True, False, False, False, True]
    assert caps["peer:ed25519:mixe"] == {"experimental.echo"}
    assert caps["peer:ed25519:late"] == {"experimental.echo"}
    skipped = [r.getMessage() for r in caplog.records if "capability skipped" in r.getMessage()]
    assert len(skipped) == 3 and any("max_concurrent" in m for m in skipped)
