"""How fast a cancelled llama.cpp generation stops, vs what llama.cpp and asyncio need.

    .venv/bin/python bench/llm_cancel.py [--rounds 15]

Builds the tiny random-weight GGUF the tests use (hearthnet/testing/tiny_gguf.py) in a
throw-away dir and runs LlmService on LlamaCppBackend (n_ctx 16384, as the tests), then
measures, alternating the paths in each round, from the cancel to the moment the caller
has control back with the engine idle (the generation thread has left llama.cpp):

  stream_close    aclose() of an `llm.chat` stream after 50 tokens
  task_cancel     cancelling the task awaiting a whole `llm.chat`
  cancel_event    backend cancel event set after 20 tokens -> the final token arrives
  deadline_late   a request deadline 0.3 s out -> `timeout` raised (time past the deadline)
  prompt_eval     cancelling during the evaluation of a ~10k-token prompt (abort callback)
  queued_cancel   cancelling a request queued behind a running generation (its thread
                  polls the engine lock every LOCK_POLL_S = 20 ms: ~10 ms expected)

Raw baselines measured in the same run: one llama.cpp decode step (`Llama.eval` of one
token, the granularity at which the engine thread checks the cancel flag), one 512-token
prompt batch (inside which the abort callback cuts), and a bare asyncio task cancel.
Prints absolute figures (median / max of the rounds, ms) and ratios to the decode step.
Target (contract): a cancelled generation stops within 200 ms.
The tests (tests/unit/services/llm/) assert that it stops; this measures how fast.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from hearthnet.bus.service import Request  # noqa: E402
from hearthnet.errors import HearthNetError  # noqa: E402
from hearthnet.services.llm.backends.llama_cpp import LlamaCppBackend  # noqa: E402
from hearthnet.services.llm.service import LlmService  # noqa: E402
from hearthnet.testing.tiny_gguf import write_tiny_llama_gguf  # noqa: E402

CTX = 16384
TARGET_MS = 200.0
FOREVER = 1_000_000


def chat(max_tokens: int, *, stream: bool = False, deadline: float = 0.0) -> Request:
    return Request(capability="llm.chat", version="1.0", stream=stream, deadline=deadline,
                   body={"params": {"model": "tiny"},
                         "input": {"messages": [{"role": "user", "content": "hello there"}],
                                   "max_tokens": max_tokens}})


def idle(b: LlamaCppBackend) -> bool:
    return not b.busy and not b._gen_lock.locked()


async def wait_busy(b: LlamaCppBackend, at_least_s: float = 0.1) -> None:
    until = time.monotonic() + 10
    while not b.busy:
        if time.monotonic() > until:
            raise RuntimeError("the generation never started")
        await asyncio.sleep(0.002)
    await asyncio.sleep(at_least_s)
    if not b.busy:
        raise RuntimeError("the generation ended before the cancel")


async def until_idle(b: LlamaCppBackend) -> None:
    while not idle(b):  # normally already true when the cancel returns
        await asyncio.sleep(0.0005)


# ------------------------------------------------------------------ the measured paths

async def stream_close(svc: LlmService, b: LlamaCppBackend, h: Callable) -> float:
    gen = await h(chat(FOREVER, stream=True))
    n = 0
    async for _ in gen:
        n += 1
        if n == 50:
            break
    t0 = time.perf_counter()
    await gen.aclose()
    await until_idle(b)
    return time.perf_counter() - t0


async def task_cancel(svc: LlmService, b: LlamaCppBackend, h: Callable) -> float:
    task = asyncio.create_task(h(chat(FOREVER)))
    await wait_busy(b)
    t0 = time.perf_counter()
    task.cancel()
    await asyncio.wait({task})
    await until_idle(b)
    return time.perf_counter() - t0


async def cancel_event(svc: LlmService, b: LlamaCppBackend, h: Callable) -> float:
    ev = asyncio.Event()
    n, t0, last = 0, 0.0, None
    async for tok in b.complete(model="tiny", prompt="the", max_tokens=FOREVER, cancel=ev):
        if tok.stop:
            last = tok
            continue
        n += 1
        if n == 20:
            ev.set()
            t0 = time.perf_counter()
    await until_idle(b)
    dt = time.perf_counter() - t0
    assert last is not None and last.usage.stop_reason == "cancelled", last
    return dt


async def deadline_late(svc: LlmService, b: LlamaCppBackend, h: Callable) -> float:
    deadline = time.monotonic() + 0.3
    try:
        await h(chat(FOREVER, deadline=deadline))
    except HearthNetError as exc:
        assert exc.code == "timeout", exc
    else:
        raise AssertionError("no timeout")
    await until_idle(b)
    return time.monotonic() - deadline


async def prompt_eval(svc: LlmService, b: LlamaCppBackend, h: Callable) -> float:
    it = b.complete(model="tiny", prompt="world " * 2000, max_tokens=5)
    first = asyncio.create_task(anext(it))
    await wait_busy(b, at_least_s=0.03)
    assert not first.done(), "prompt evaluation finished before the cancel"
    t0 = time.perf_counter()
    first.cancel()
    await asyncio.wait({first})
    await until_idle(b)
    dt = time.perf_counter() - t0
    await it.aclose()
    return dt


async def queued_cancel(svc: LlmService, b: LlamaCppBackend, h: Callable) -> float:
    long = asyncio.create_task(h(chat(FOREVER)))
    await wait_busy(b, at_least_s=0.02)
    queued = asyncio.create_task(h(chat(5)))
    await asyncio.sleep(0.05)
    assert not queued.done()
    t0 = time.perf_counter()
    queued.cancel()
    await asyncio.wait({queued})
    dt = time.perf_counter() - t0
    assert not long.done()
    long.cancel()
    await asyncio.wait({long})
    await until_idle(b)
    return dt


PATHS = [stream_close, task_cancel, cancel_event, deadline_late, prompt_eval, queued_cancel]


# ------------------------------------------------------------------ raw baselines

def raw_llama(model: Path, n: int = 200) -> dict[str, float]:
    """One decode step and one 512-token prompt batch in bare llama-cpp-python."""
    import llama_cpp

    threads = os.cpu_count() or 1
    llm = llama_cpp.Llama(model_path=str(model), n_ctx=CTX, n_threads=threads,
                          n_threads_batch=threads, verbose=False)
    try:
        prompt = llm.tokenize(b"the", add_bos=True)
        steps = []
        llm.reset()
        llm.eval(prompt)
        tok = prompt[-1]
        for _ in range(n):
            t0 = time.perf_counter()
            llm.eval([tok])
            steps.append(time.perf_counter() - t0)
        batch = llm.tokenize(b"world " * 600, add_bos=True)[:512]
        batches = []
        for _ in range(5):
            llm.reset()
            t0 = time.perf_counter()
            llm.eval(batch)
            batches.append(time.perf_counter() - t0)
        return {"decode_step_ms": statistics.median(steps) * 1000,
                "decode_step_max_ms": max(steps) * 1000,
                "prompt_batch_512_ms": statistics.median(batches) * 1000}
    finally:
        llm.close()


async def bare_cancel(n: int = 200) -> float:
    out = []
    for _ in range(n):
        task = asyncio.create_task(asyncio.sleep(3600))
        await asyncio.sleep(0)  # let it start waiting
        t0 = time.perf_counter()
        task.cancel()
        await asyncio.wait({task})
        out.append(time.perf_counter() - t0)
    return statistics.median(out) * 1000


async def measure(model: Path, rounds: int) -> dict[str, list[float]]:
    cfg = SimpleNamespace(backends=[SimpleNamespace(
        name="llama_cpp", model_path=str(model), model="tiny", ctx=CTX, url="", api_key_env="",
        max_concurrent=0, models=())])
    svc = LlmService(cfg)
    await svc.start()
    (b,) = svc.backends
    h = {c.name: c.handler for c in svc.capabilities()}["llm.chat"]
    await h(chat(4))  # warm
    times: dict[str, list[float]] = {p.__name__: [] for p in PATHS}
    try:
        for _ in range(rounds):
            for path in PATHS:
                times[path.__name__].append(await path(svc, b, h) * 1000)
                assert idle(b), f"{path.__name__}: engine still busy"
    finally:
        await svc.stop()
    return times


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=15)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="hn-llm-cancel-") as tmp:
        model = write_tiny_llama_gguf(Path(tmp) / "tiny-llama.gguf")
        raw = raw_llama(model)
        raw["bare_asyncio_cancel_ms"] = asyncio.run(bare_cancel())
        times = asyncio.run(measure(model, args.rounds))
        raw_after = raw_llama(model)  # the machine is shared: bracket the run
    step = statistics.median([raw["decode_step_ms"], raw_after["decode_step_ms"]])
    summary = {name: {"median_ms": round(statistics.median(v), 2), "max_ms": round(max(v), 2),
                      "x_decode_step": round(statistics.median(v) / step, 1),
                      "within_200ms": sum(x < TARGET_MS for x in v)}
               for name, v in times.items()}
    raw_out = {"decode_step_ms": [round(raw["decode_step_ms"], 3), round(raw_after["decode_step_ms"], 3)],
               "decode_step_max_ms": round(max(raw["decode_step_max_ms"], raw_after["decode_step_max_ms"]), 2),
               "prompt_batch_512_ms": [round(raw["prompt_batch_512_ms"], 1),
                                       round(raw_after["prompt_batch_512_ms"], 1)],
               "bare_asyncio_cancel_ms": round(raw["bare_asyncio_cancel_ms"], 4)}
    print(json.dumps({"rounds": args.rounds, "raw": raw_out, "cancel": summary,
                      "target_ms": TARGET_MS, "load_avg": os.getloadavg()}, indent=2))
    worst = max(max(v) for v in times.values())
    print(f"\ncancel -> engine idle, medians of {args.rounds} alternating rounds: "
          + ", ".join(f"{k} {s['median_ms']} ms ({s['x_decode_step']}x)" for k, s in summary.items()))
    print(f"raw: llama.cpp decode step {step:.3f} ms, 512-token prompt batch "
          f"{raw_out['prompt_batch_512_ms']} ms, bare asyncio task cancel "
          f"{raw_out['bare_asyncio_cancel_ms']} ms")
    print(f"target: every cancel < {TARGET_MS:.0f} ms; worst seen {worst:.1f} ms "
          f"({'met' if worst < TARGET_MS else 'MISSED'})")


if __name__ == "__main__":
    main()
