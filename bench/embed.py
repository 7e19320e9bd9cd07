"""embed.text throughput at batch 32 vs the raw forward pass, in one run.

    .venv/bin/python bench/embed.py [--texts 256] [--rounds 3] [--no-node] [--clients 4]

raw:     all-MiniLM-L6-v2's numpy forward pass called directly in this process
         (`MiniLm.forward(*MiniLm.tokenize(batch))`, one call per 32 texts, normalised):
         the backend's own figure, nothing around it.
service: `EmbeddingService.handle()` with the minilm backend on the same loaded model,
         one request of 32 texts after the other (validation, the batcher, a worker
         thread per pass, normalisation, `.tolist()`), and `--clients` requests in flight
         at once (the batcher merges what waits into passes of 32).
node:    a real node started for the bench: `embed.text` requests of 32 texts through the
         local API (HTTP on the unix socket -> gateway -> broker -> embedding worker and
         back as JSON), one client, then `--clients` clients; plus the embedding worker's
         RSS after start (the model loaded once) and its peak during the run.
Prints texts/s for each, the ratio to raw (target >= 0.8 at batch 32), medians of
rounds. The 1-client paths take turns batch by batch on the same 32 texts, so the
background load of a shared machine hits them alike; the `--clients` figures are whole
runs, each compared with a raw whole run just before it (the ratio printed is the
median of those per-round ratios). The texts are English sentences of 8-60 words (seeded).
"""
from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from hearthnet.bus.service import Request  # noqa: E402
from hearthnet.services.embedding.base import l2_normalize  # noqa: E402
from hearthnet.services.embedding.minilm import MODEL_NAME, MiniLm, MiniLmBackend  # noqa: E402
from hearthnet.services.embedding.service import EmbeddingService  # noqa: E402

BATCH = 32
WORDS = ("water shelter flood plan street boil minutes bleach drops gallon neighbours "
         "generator fuel radio battery medicine school gym beds blankets evacuation route "
         "river bank bridge closed open hours volunteers kitchen food storage cold warm "
         "children elderly help phone list meeting point north south east west").split()


def make_texts(n: int, seed: int = 8) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(8, 60))).capitalize() + "."
            for _ in range(n)]


def batches(texts: list[str]) -> list[list[str]]:
    return [texts[i:i + BATCH] for i in range(0, len(texts), BATCH)]


def raw_pass(model: MiniLm, b: list[str]) -> None:
    l2_normalize(model.forward(*model.tokenize(b)))


def body(b: list[str]) -> dict:
    return {"params": {"model": MODEL_NAME}, "input": {"texts": b}}


class InProcess:
    """An EmbeddingService with the minilm backend on the already loaded model (same
    weights, same process), on its own event loop."""

    def __init__(self, model: MiniLm) -> None:
        backend = MiniLmBackend()
        backend._model = model
        self.svc = EmbeddingService([backend], batch_size=BATCH)
        self.loop = asyncio.new_event_loop()
        self.loop.run_until_complete(self.svc.start())

    def call(self, b: list[str]) -> None:
        out = self.loop.run_until_complete(self.svc.handle(Request("embed.text", "1.0", body(b))))
        assert len(out["output"]["embeddings"]) == len(b)

    def concurrent(self, texts: list[str], clients: int) -> float:
        work = batches(texts)

        async def client(k: int) -> None:
            for b in work[k::clients]:
                await self.svc.handle(Request("embed.text", "1.0", body(b)))

        async def all_clients() -> None:
            await asyncio.gather(*(client(k) for k in range(clients)))

        t0 = time.perf_counter()
        self.loop.run_until_complete(all_clients())
        return len(texts) / (time.perf_counter() - t0)

    def close(self) -> None:
        self.loop.run_until_complete(self.svc.stop())
        self.loop.close()


def node_call(node, b: list[str]) -> None:
    status, out = node.call("embed.text", body(b), timeout=120)
    if status != 200 or len(out["output"]["embeddings"]) != len(b):
        raise SystemExit(f"embed.text failed: {status} {str(out)[:200]}")


def node_concurrent(node, texts: list[str], clients: int) -> float:
    work = batches(texts)

    def client(k: int) -> None:
        for b in work[k::clients]:
            node_call(node, b)

    threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return len(texts) / (time.perf_counter() - t0)


def raw_whole(model: MiniLm, texts: list[str]) -> float:
    t0 = time.perf_counter()
    for b in batches(texts):
        raw_pass(model, b)
    return len(texts) / (time.perf_counter() - t0)


def node_concurrent_of(node):
    return None if node is None else (lambda texts, clients: node_concurrent(node, texts, clients))


def interleaved(paths: dict, texts: list[str]) -> dict[str, float]:
    """texts/s of each path, one batch of 32 at a time, the paths taking turns on the
    same batch: background load on the shared machine hits them alike."""
    spent = dict.fromkeys(paths, 0.0)
    names = list(paths)
    for k, b in enumerate(batches(texts)):
        # who goes first rotates: a pass right after another process's pass can find that
        # process's BLAS threads still spinning on the cores
        for name in names[k % len(names):] + names[:k % len(names)]:
            t0 = time.perf_counter()
            paths[name](b)
            spent[name] += time.perf_counter() - t0
    return {name: len(texts) / t for name, t in spent.items()}


def start_node(tmp: Path):
    from hearthnet.testing.nodes import Node

    node = Node(tmp / "bench-node", "bench")
    node.init()
    node.start(wait_workers=("broker", "gateway", "embedding"))
    return node


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--texts", type=int, default=256)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--no-node", action="store_true", help="skip the real node")
    args = ap.parse_args()
    texts = make_texts(args.texts)
    model = MiniLm()
    raw_pass(model, texts[:BATCH])  # warm BLAS
    service = InProcess(model)
    rates: dict[str, list[float]] = {k: [] for k in ("raw", "service", "node", "service_n", "node_n")}
    ratios: dict[str, list[float]] = {"service_n": [], "node_n": []}
    rss = peak_rss = None
    with tempfile.TemporaryDirectory(prefix="hn-bench-embed-", dir=os.environ.get("HN_BENCH_DIR")) as tmp_name:
        node = None if args.no_node else start_node(Path(tmp_name))
        try:
            paths = {"raw": lambda b: raw_pass(model, b), "service": service.call}
            if node is not None:
                from hearthnet.testing.rss import PeakRss, node_processes

                peak = PeakRss({"embedding": node_processes(node.proc.pid)["embedding"]})
                peak.start()
                rss = peak.before["embedding"]
                paths["node"] = lambda b: node_call(node, b)
            for name, call in paths.items():
                call(texts[:BATCH])  # first calls: connections, code paths
            for _ in range(args.rounds):
                for name, rate in interleaved(paths, texts).items():
                    rates[name].append(rate)
                # whole runs with clients in flight, each against a raw whole run just before
                for name, run in (("service_n", service.concurrent), ("node_n", node_concurrent_of(node))):
                    if run is not None:
                        before = raw_whole(model, texts)
                        rate = run(texts, args.clients)
                        rates[name].append(rate)
                        ratios[name].append(rate / before)
            if node is not None:
                peak_rss = peak.peaks()["embedding"]
        finally:
            service.close()
            if node is not None:
                node.stop()
    med = {k: statistics.median(v) for k, v in rates.items() if v}
    r = med["raw"]
    print(f"{args.texts} texts of 8-60 words, batch {BATCH}, medians of {args.rounds} rounds, "
          f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}")
    print(f"  raw forward pass (numpy, in process)   {r:7.1f} texts/s")
    rows = [("service", "EmbeddingService.handle, 1 client"),
            ("node", "node local API embed.text, 1 client"),
            ("service_n", f"EmbeddingService.handle, {args.clients} clients"),
            ("node_n", f"node local API embed.text, {args.clients} clients")]
    for key, label in rows:
        if key in med:
            ratio = statistics.median(ratios[key]) if key in ratios else med[key] / r
            print(f"  {label:<38} {med[key]:7.1f} texts/s   ratio {ratio:.2f}x raw")
    if rss is not None:
        print(f"  embedding worker RSS: {rss / 2**20:.0f} MiB after start (model loaded), "
              f"peak {peak_rss / 2**20:.0f} MiB during the run")


if __name__ == "__main__":
    main()
