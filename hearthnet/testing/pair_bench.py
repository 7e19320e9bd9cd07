"""What the two-node delivery benchmarks (bench/chat.py, bench/alerts.py) share: two real
nodes A and B joined by invite and peer-added both ways (B also runs the echo worker, the
raw baseline), keep-alive calls to a node's local API, paced raw signed peer calls, and
the report (a rich table of medians over rounds plus the JSON of every round)."""
from __future__ import annotations

import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from hearthnet.testing.nodes import Node, join_by_invite
from hearthnet.testing.waiting import wait_for
from hearthnet.unixhttp import UnixHTTPConnection

POLL_TIMEOUT_S = 30.0


class LocalCalls:
    """Calls over one keep-alive connection to a node's local API."""

    def __init__(self, node: Node) -> None:
        self.conn = UnixHTTPConnection(str(node.api_socket), timeout=30)
        self.token = node.token()

    def call(self, cap: str, inp: dict[str, Any]) -> dict[str, Any]:
        headers = {"Authorization": f"Bearer {self.token}", "Content-Type": "application/json",
                   "X-HearthNet-Capability": cap}
        self.conn.request("POST", "/bus/v1/call", body=json.dumps({"params": {}, "input": inp}).encode(),
                          headers=headers)
        resp = self.conn.getresponse()
        data = resp.read()
        if resp.status != 200:
            raise RuntimeError(f"{cap}: {resp.status} {data[:300]!r}")
        return json.loads(data)["output"]

    def close(self) -> None:
        self.conn.close()


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(len(s) * q))]


def poll(fn: Any) -> Any:
    """Ask `fn` as fast as it answers until it gives something truthy (bounded)."""
    deadline = time.monotonic() + POLL_TIMEOUT_S
    while time.monotonic() < deadline:
        got = fn()
        if got:
            return got
    raise RuntimeError("what the benchmark waited for never arrived")


def raw_round(a: LocalCalls, n: int, rate: float) -> list[float]:
    """`n` paced raw signed peer calls (experimental.echo, served by B): ms each."""
    out, gap, nxt = [], 1.0 / rate, time.monotonic()
    for _ in range(n):
        nxt += gap
        t0 = time.perf_counter()
        a.call("experimental.echo", {"text": "x" * 150})
        out.append((time.perf_counter() - t0) * 1000)
        time.sleep(max(0.0, nxt - time.monotonic()))
    return out


def routes(node: Node, cap: str, other: str) -> bool:
    """`node`'s broker offers `cap` from node `other`."""
    return any(c["name"] == cap and not c["local"] and c["node_id"] == other
               for c in node.api("/api/v1/capabilities")["capabilities"])


class NodePair:
    """A (founder) and B (joined, + echo) running `workers`, peered both ways; `with`
    stops both and removes their directories."""

    def __init__(self, prefix: str, workers: tuple[str, ...]) -> None:
        self.tmp = tempfile.TemporaryDirectory(prefix=prefix)
        self.a, self.b = Node(Path(self.tmp.name) / "a", "a"), Node(Path(self.tmp.name) / "b", "b")
        self.b.env["HEARTHNET_WORKERS_ECHO"] = "true"
        self.workers = workers
        self.calls: list[LocalCalls] = []

    def __enter__(self) -> "NodePair":
        try:
            self.a.init()
            self.a.start(wait_workers=self.workers)
            join_by_invite(self.a, self.b)
            self.b.start(wait_workers=(*self.workers, "echo"))
            self.a.peer_add(self.b)
            self.b.peer_add(self.a)
            self.a_id = self.a.api("/api/v1/status")["node"]["node_id"]
            self.b_id = self.b.api("/api/v1/status")["node"]["node_id"]
        except BaseException:
            self.__exit__()
            raise
        return self

    def wait_routes(self, *caps_from_b: str, a_caps_on_b: tuple[str, ...] = ()) -> None:
        """Until A routes each of `caps_from_b` (and echo) to B, and B each of `a_caps_on_b` to A."""
        wait_for(lambda: all(routes(self.a, c, self.b_id) for c in (*caps_from_b, "experimental.echo"))
                 and all(routes(self.b, c, self.a_id) for c in a_caps_on_b), 90, 0.2,
                 message="the nodes route to each other")

    def local_calls(self) -> tuple[LocalCalls, LocalCalls]:
        pair = LocalCalls(self.a), LocalCalls(self.b)
        self.calls += pair
        return pair

    def __exit__(self, *_exc: Any) -> None:
        for c in self.calls:
            c.close()
        self.a.cleanup()
        self.b.cleanup()
        self.tmp.cleanup()


def round_stats(lat: list[float]) -> dict[str, float]:
    return {"p50_ms": pct(lat, 0.5), "p99_ms": pct(lat, 0.99)}


def report(title: str, labels: dict[str, str], res: dict[str, list[dict[str, float]]],
           extra: dict[str, Any]) -> None:
    """Medians over rounds in a table (each path's p50 against the raw call's), then the
    JSON of the medians, `extra` and every round."""
    med = {name: {k: round(statistics.median(r[k] for r in runs), 2) for k in ("p50_ms", "p99_ms")}
           for name, runs in res.items()}
    table = Table(title=title)
    for col in ("path", "p50 ms", "p99 ms", "p50 / raw"):
        table.add_column(col)
    for name, label in labels.items():
        table.add_row(label, f"{med[name]['p50_ms']:.1f}", f"{med[name]['p99_ms']:.1f}",
                      f"{med[name]['p50_ms'] / med['raw']['p50_ms']:.1f}x")
    Console().print(table)
    print(json.dumps({"median_of_rounds": med, **extra, "runs": res}, indent=1))
