"""embed.text@1.0 in the service object: the contract's validation and errors, unit norm,
model routing, and the batcher (splits, merges, input order, failures, cancellation)."""
from __future__ import annotations

import asyncio
import functools
from typing import Any, Sequence

import numpy as np
import pytest

from hearthnet.bus.service import Request
from hearthnet.errors import HearthNetError
from hearthnet.services.embedding.base import EmbeddingBackend
from hearthnet.services.embedding.service import EmbeddingService, validate


def sync(fn):
    """Run an async test in its own event loop (the project has no pytest-asyncio)."""
    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> Any:
        return asyncio.run(fn(*args, **kwargs))

    return run


class FakeBackend:
    """Deterministic vectors: text i -> [len(text), 1, 2, ...] (not unit length)."""

    name = "fake"
    max_input = 8192
    window_tokens = 16
    requires_internet = False

    def __init__(self, model: str = "fake-model", dim: int = 4, fail: BaseException | None = None,
                 gate: asyncio.Event | None = None) -> None:
        self.model, self.dim, self.fail, self.gate = model, dim, fail, gate
        self.calls: list[list[str]] = []
        self.warmed = self.closed = False

    async def embed(self, texts: Sequence[str], *, normalize: bool = True) -> np.ndarray:
        self.calls.append(list(texts))
        if self.gate is not None:
            await self.gate.wait()
        if self.fail is not None:
            raise self.fail
        return np.asarray([[len(t) + 1.0] + [float(k) for k in range(1, self.dim)] for t in texts],
                          dtype=np.float32)

    async def warm(self) -> None:
        self.warmed = True

    async def close(self) -> None:
        self.closed = True

    def health(self) -> dict[str, Any]:
        return {"backend": self.name, "model": self.model}


def body(texts: Any, model: Any = "fake-model", **inp: Any) -> dict[str, Any]:
    return {"params": {"model": model}, "input": {"texts": texts, **inp}}


def req(b: Any) -> Request:
    return Request(capability="embed.text", version="1.0", body=b)


async def started(*backends: FakeBackend, batch_size: int = 32) -> EmbeddingService:
    svc = EmbeddingService(list(backends), batch_size=batch_size)
    await svc.start()
    return svc


def test_fake_backend_fits_the_protocol():
    assert isinstance(FakeBackend(), EmbeddingBackend)


@pytest.mark.parametrize("bad, words", [
    ([], "must be an object"),
    ({"params": {"model": "fake-model"}}, "input"),
    ({"input": {"texts": ["a"]}}, "params"),
    (body(["a"], model=None), "params.model is required"),
    (body(["a"], model=7), "params.model is required"),
    (body("just one string"), "list of strings"),
    (body([]), "send 1 to 256"),
    (body(["x"] * 257), "257 texts"),
    (body(["ok", 3]), "input.texts[1] must be a string"),
    (body(["ok", None]), "input.texts[1]"),
    (body(["a" * 8193]), "8193 characters; at most 8192"),
    (body(["a"], normalize="yes"), "normalize"),
])
def test_bad_input_is_bad_request(bad, words):
    with pytest.raises(HearthNetError) as err:
        validate(bad)
    assert err.value.code == "bad_request" and words in err.value.message


def test_the_bounds_themselves_are_accepted():
    model, texts, normalize = validate(body(["a" * 8192] + [""] * 255))
    assert (model, len(texts), normalize) == ("fake-model", 256, True)


@sync
async def test_reply_has_unit_vectors_dim_and_meta():
    svc = await started(FakeBackend())
    out = await svc.handle(req(body(["a", "bbb", ""])))
    vecs = np.asarray(out["output"]["embeddings"])
    assert out["output"]["dim"] == 4 and vecs.shape == (3, 4)
    assert np.allclose(np.linalg.norm(vecs, axis=1), 1.0)
    assert out["meta"]["model"] == "fake-model" and isinstance(out["meta"]["ms"], int)
    raw = await svc.handle(req(body(["a", "bbb"], normalize=False)))
    assert raw["output"]["embeddings"][1] == [4.0, 1.0, 2.0, 3.0]


@sync
async def test_routed_by_model_and_unknown_model_is_not_found():
    a, b = FakeBackend("model-a", dim=3), FakeBackend("model-b", dim=5)
    svc = await started(a, b)
    out = await svc.handle(req(body(["x"], model="model-b")))
    assert out["output"]["dim"] == 5 and b.calls == [["x"]] and a.calls == []
    with pytest.raises(HearthNetError) as err:
        await svc.handle(req(body(["x"], model="model-c")))
    assert err.value.code == "not_found" and "model-a, model-b" in err.value.message


@sync
async def test_descriptor_follows_the_contract():
    svc = await started(FakeBackend("model-a", dim=3), FakeBackend("model-b", dim=5))
    (cap,) = svc.capabilities()
    d = cap.descriptor()
    assert (d["name"], d["version"], d["trust_required"], d["timeout_seconds"], d["idempotent"],
            d["max_concurrent"], d["streams"]) == ("embed.text", "1.0", "member", 15, True, 8, False)
    assert d["params"]["model"] == "model-a" and d["params"]["dim"] == 3
    assert [m["name"] for m in d["params"]["models"]] == ["model-a", "model-b"]
    assert d["params"]["models"][1] == {"name": "model-b", "dim": 5, "window_tokens": 16,
                                        "backend": "fake", "requires_internet": False}
    assert cap.request_schema["properties"]["input"]["properties"]["texts"]["maxItems"] == 256
    assert EmbeddingService([]).capabilities() == []


@sync
async def test_a_request_runs_in_batches_and_comes_back_in_input_order():
    backend = FakeBackend()
    svc = await started(backend, batch_size=32)
    texts = ["x" * ((i * 37) % 101) for i in range(100)]
    out = await svc.handle(req(body(texts, normalize=False)))
    assert [len(c) for c in backend.calls] == [32, 32, 32, 4]
    assert [row[0] for row in out["output"]["embeddings"]] == [len(t) + 1.0 for t in texts]
    # each batch holds texts of similar length (sorted), so little of a pass is padding
    assert all(max(map(len, c)) - min(map(len, c)) <= 40 for c in backend.calls)


@sync
async def test_requests_waiting_together_share_a_pass():
    gate = asyncio.Event()
    backend = FakeBackend(gate=gate)
    svc = await started(backend, batch_size=8)
    first = asyncio.create_task(svc.handle(req(body(["first"]))))
    await asyncio.sleep(0)  # the first pass starts and blocks on the gate
    others = [asyncio.create_task(svc.handle(req(body([f"r{i}-a", f"r{i}-bb"], normalize=False))))
              for i in range(3)]
    await asyncio.sleep(0)
    gate.set()
    results = await asyncio.gather(first, *others)
    assert [len(c) for c in backend.calls] == [1, 6]  # three requests merged into one pass
    for i, out in enumerate(results[1:]):
        assert [row[0] for row in out["output"]["embeddings"]] == [len(f"r{i}-a") + 1, len(f"r{i}-bb") + 1]
    assert svc.health()["merged_passes"] == 1


@sync
async def test_backend_failure_is_internal_error_without_traceback_and_the_next_call_works():
    backend = FakeBackend(fail=ZeroDivisionError("boom in the forward pass"))
    svc = await started(backend)
    with pytest.raises(HearthNetError) as err:
        await svc.handle(req(body(["a"])))
    assert err.value.code == "internal_error" and "ZeroDivisionError" in err.value.message
    assert "Traceback" not in err.value.message and "boom" not in err.value.message
    backend.fail = HearthNetError("rate_limited", "slow down", retry_after_ms=100)
    with pytest.raises(HearthNetError) as err:
        await svc.handle(req(body(["a"])))
    assert err.value.code == "rate_limited"  # a contract error of the backend passes as is
    backend.fail = None
    assert (await svc.handle(req(body(["a"]))))["output"]["dim"] == 4
    assert svc.health()["errors"] == 2


@sync
async def test_a_cancelled_request_is_skipped_by_the_runner():
    gate = asyncio.Event()
    backend = FakeBackend(gate=gate)
    svc = await started(backend, batch_size=2)
    blocker = asyncio.create_task(svc.handle(req(body(["one"]))))
    await asyncio.sleep(0)
    gone = asyncio.create_task(svc.handle(req(body(["c1", "c2", "c3", "c4"]))))
    await asyncio.sleep(0)
    gone.cancel()
    gate.set()
    await blocker
    with pytest.raises(asyncio.CancelledError):
        await gone
    await asyncio.sleep(0.01)
    assert backend.calls == [["one"]]  # none of the cancelled request's texts ran


@sync
async def test_start_warms_and_stop_closes_every_backend():
    a = FakeBackend()
    svc = await started(a)
    assert a.warmed
    await svc.stop()
    assert a.closed


@sync
async def test_a_backend_that_cannot_load_is_left_out_with_a_note():
    class Broken(FakeBackend):
        async def warm(self) -> None:
            raise RuntimeError("weights missing")

    svc = await started(Broken())
    assert svc.capabilities() == []
    assert "weights missing" in svc.health()["note"]


@sync
async def test_a_backend_answering_the_wrong_number_of_vectors_is_internal_error():
    class Short(FakeBackend):
        async def embed(self, texts, *, normalize=True):
            return (await super().embed(texts))[:-1]

    svc = await started(Short())
    for texts in (["a", "b"], ["c"]):  # the second call shows the runner survived the first
        with pytest.raises(HearthNetError) as err:
            await svc.handle(req(body(texts)))
        assert err.value.code == "internal_error" and "ValueError" in err.value.message
