"""A RagService on a real blob store and corpus directory, with a fake bus: a small
deterministic embedder behind the `embed.text` call shape (hashed words: texts sharing
words point the same way) and the ledger's append."""
from __future__ import annotations

import asyncio
import hashlib
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from hearthnet.blobs.store import BlobStore
from hearthnet.bus.service import Request
from hearthnet.errors import HearthNetError
from hearthnet.identity import keys
from hearthnet.services.rag.ingest import StoreBlobs
from hearthnet.services.rag.service import RagService, RagSettings

ME = keys.generate().node_id_full
PEER = keys.generate().node_id_full
MODEL = "test-hash-embed"
DIM = 64
MODEL2, DIM2 = "test-hash-embed-small", 32  # a second model, for reindexing
DIMS = {MODEL: DIM, MODEL2: DIM2}


def hash_embed(text: str, dim: int = DIM) -> list[float]:
    v = np.zeros(dim, dtype=np.float64)
    for w in re.findall(r"\w+", text.lower()):
        h = int.from_bytes(hashlib.blake2b(w[:6].encode(), digest_size=8).digest(), "little")
        v[h % dim] += 1.0 if (h >> 32) & 1 else -1.0
    n = np.linalg.norm(v)
    return (v / n if n else v).tolist()


class FakeBus:
    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.embed_calls = 0
        self.embed_fail_after: int | None = None  # raise on the embed call after this many
        self.embed_missing = False
        self.ledger_down = False
        self.embed_gate: asyncio.Event | None = None  # when set up, each embed call waits for it
        self.embed_models: list[str] = []

    async def call(self, cap: str, version: str, body: Any, *, caller: str = "", trace: str = "",
                   timeout: float | None = None, local_only: bool = False,
                   node: str | None = None) -> dict[str, Any]:
        if cap == "embed.text":
            if self.embed_missing:
                raise HearthNetError("not_found", "no provider for embed.text@1.0")
            model = body["params"]["model"]
            if model not in DIMS:
                raise HearthNetError("not_found", f"no provider for embed.text@1.0 with model {model}")
            assert body["input"]["normalize"] is True
            texts = body["input"]["texts"]
            assert 1 <= len(texts) <= 256 and all(len(t) <= 8192 for t in texts)
            self.embed_calls += 1
            self.embed_models.append(model)
            if self.embed_fail_after is not None and self.embed_calls > self.embed_fail_after:
                raise HearthNetError("internal_error", "the embedding worker died")
            if self.embed_gate is not None:
                await self.embed_gate.wait()
            await asyncio.sleep(0)
            return {"output": {"embeddings": [hash_embed(t, DIMS[model]) for t in texts], "dim": DIMS[model]},
                    "meta": {"model": model, "ms": 1}}
        if cap == "community.log.append":
            assert node == ME and caller == ME
            if self.ledger_down:
                raise HearthNetError("timeout", "the ledger did not answer")
            ev = {"event_id": f"01EVENT{len(self.events):04d}", "event_type": body["input"]["event_type"],
                  "data": body["input"]["data"], "author": ME}
            self.events.append(ev)
            return {"output": {"event": ev}}
        raise HearthNetError("not_found", f"no {cap}")


class Harness:
    def __init__(self, root: Path, **settings: Any) -> None:
        self.root = root
        self.loop = asyncio.new_event_loop()
        self.blobs = BlobStore(root / "blobs", min_free_bytes=0)
        self.bus = FakeBus()
        self.settings = RagSettings(**{"corpora_dir": root / "embeddings", "embedding_model": MODEL, **settings})
        self.announced = 0
        self.svc = self.new_service()

    def new_service(self, **settings: Any) -> RagService:
        s = RagSettings(**{**self.settings.__dict__, **settings})
        svc = RagService(s, self.bus, StoreBlobs(self.root / "blobs"), ME)
        svc.announce_changes = self._announced
        self.loop.run_until_complete(svc.start())
        self.svc = svc
        return svc

    def close_service(self) -> None:
        self.loop.run_until_complete(self.svc.stop())

    def _announced(self) -> None:
        self.announced += 1

    def caps(self) -> dict[str, Any]:
        return {c.name: c for c in self.svc.capabilities()}

    def add(self, data: bytes, filename: str | None = None, mime: str | None = None) -> str:
        return self.blobs.add_bytes(data, filename=filename, mime_type=mime).cid

    def call(self, cap: str, params: dict[str, Any], inp: dict[str, Any], *, caller: str = ME) -> dict[str, Any]:
        req = Request(capability=cap, version="1.0", body={"params": params, "input": inp}, caller=caller)
        return self.loop.run_until_complete(self.caps()[cap].handler(req))

    def stream(self, cap: str, params: dict[str, Any], inp: dict[str, Any], *, caller: str = ME) -> list[tuple[str, Any]]:
        req = Request(capability=cap, version="1.0", body={"params": params, "input": inp}, caller=caller, stream=True)

        async def go() -> list[tuple[str, Any]]:
            frames = await self.caps()[cap].handler(req)
            return [f async for f in frames]

        return self.loop.run_until_complete(go())

    def ingest(self, corpus: str, cid: str, **inp: Any) -> dict[str, Any]:
        return self.call("rag.ingest", {"corpus": corpus}, {"doc_cid": cid, **inp})

    def query(self, corpus: str, query: str, *, caller: str = ME, **inp: Any) -> dict[str, Any]:
        return self.call("rag.query", {"corpus": corpus}, {"query": query, **inp}, caller=caller)

    def close(self) -> None:
        self.loop.run_until_complete(self.svc.stop())
        self.loop.close()


@pytest.fixture
def rag(tmp_path):
    h = Harness(tmp_path)
    yield h
    h.close()
