"""A MarketService on a real EventLog (the ledger's domain rules judge every append), with
a fake bus: the ledger capabilities on that log, a deterministic embedder behind
`embed.text` (hashed words: texts sharing words point the same way) and the broker's
capability list saying who serves it."""
from __future__ import annotations

import asyncio
import hashlib
import re
from typing import Any

import numpy as np
import pytest

from hearthnet.errors import HearthNetError
from hearthnet.identity.keys import KeyPair
from hearthnet.services.market.service import MarketService, MarketSettings
from tests.unit.ledger.conftest import Community, community, root  # noqa: F401 - fixtures
from tests.unit.services.ledger_bus import LedgerBus, ServiceHarness

MODEL = "test-hash-embed"
DIM = 64


def hash_embed(text: str) -> list[float]:
    v = np.zeros(DIM, dtype=np.float64)
    for w in re.findall(r"\w+", text.lower()):
        h = int.from_bytes(hashlib.blake2b(w[:6].encode(), digest_size=8).digest(), "little")
        v[h % DIM] += 1.0
    n = np.linalg.norm(v)
    return (v / n if n else v).tolist()


class MarketBus(LedgerBus):
    """What the market worker asks over the bus, answered in process."""

    def __init__(self, community: Community, kp: KeyPair) -> None:
        super().__init__(community, kp)
        self.embedding = False
        self.embed_fail: str | None = None
        self.embedded_texts = 0
        self.embed_hang_after: int | None = None  # embed.text calls after this many hang
        self.embed_calls = 0

    async def other(self, cap: str, body: Any, *, caller: str, node: str | None) -> dict[str, Any]:
        inp = body["input"]
        if cap == "embed.text":
            if not self.embedding:
                raise HearthNetError("not_found", "no provider for embed.text@1.0")
            if self.embed_fail:
                raise HearthNetError(self.embed_fail, "embedding failed")
            assert body["params"]["model"] == MODEL and 1 <= len(inp["texts"]) <= 256
            self.embed_calls += 1
            if self.embed_hang_after is not None and self.embed_calls > self.embed_hang_after:
                await asyncio.Event().wait()
            self.embedded_texts += len(inp["texts"])
            return {"output": {"embeddings": [hash_embed(t) for t in inp["texts"]], "dim": DIM}}
        return await super().other(cap, body, caller=caller, node=node)

    async def admin(self, op: str, **args: Any) -> dict[str, Any]:
        assert op == "caps"
        caps = [{"name": "embed.text", "params": {"model": MODEL}, "providers": 1, "local": False}]
        return {"capabilities": caps if self.embedding else []}


class Market(ServiceHarness):
    """One node's market service + helpers to call it as its owner (or as someone else)."""

    def __init__(self, community: Community, kp: KeyPair, levels: dict[str, str], **settings: Any) -> None:
        super().__init__(community, kp)
        self.levels = levels
        self.bus = MarketBus(community, kp)
        self.svc = MarketService(MarketSettings(embedding_model=MODEL, **settings), self.bus, kp.node_id_full,
                                 levels.get)

    def start(self) -> None:
        """What the follower does at each subscription: the view rebuilt from the log."""
        asyncio.run(self.catch_up())

    async def catch_up(self) -> None:
        await self._catch_up()

    def post(self, n: int = 0, **fields: Any) -> dict[str, Any]:
        inp = {"client_id": f"post-{n}", "category": "offer", "title": f"Ladder {n}", "body": "free to borrow",
               "tags": ["tools"], **fields}
        return self.call("market.post", inp)["output"]


@pytest.fixture
def levels(community: Community) -> dict[str, str]:
    return {community.root.node_id_full: "anchor"}


@pytest.fixture
def make_market(community: Community, levels: dict[str, str]):
    def make(kp: KeyPair | None = None, **settings: Any) -> Market:
        m = Market(community, kp or community.root, levels, **settings)
        m.start()
        return m
    return make


@pytest.fixture
def market(make_market) -> Market:
    return make_market()
