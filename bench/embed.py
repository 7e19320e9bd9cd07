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
alternating rounds. The texts are English sentences of 8-60 words (seeded).
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


def raw(model: MiniLm, texts: list[str]) -> float:
    t0 = time.perf_counter()
    for b in batches(texts):
        l2_normalize(model.forward(*model.tokenize(b)))
    return len(texts) / (time.perf_counter() - t0)


def body(b: list[str]) -> dict:
    return {"params": {"model": MODEL_NAME}, "input": {"texts": b}}


def service(model: MiniLm, texts: list[str], clients: int) -> float:
    async def go() -> float:
        backend = MiniLmBackend()
        backend._model = model  # the already loaded model: same weights, same process
        svc = EmbeddingService([backend], batch_size=BATCH)
        await svc.start()
        work = batches(texts)

        async def client(k: int) -> None:
            for b in work[k::clients]:
                out = await svc.handle(Request("embed.text", "1.0", body(b)))
                assert len(out["output"]["embeddings"]) == len(b)

        t0 = time.perf_counter()
        await asyncio.gather(*(client(k) for k in range(clients)))
        took = time.perf_counter() - t0
        await svc.stop()
        return len(texts) / took

    return asyncio.run(go())


def node_rate(node, texts: list[str], clients: int) -> float:
    work = batches(texts)
    errors: list[str] = []

    def client(k: int) -> None:
        for b in work[k::clients]:
            status, out = node.call("embed.text", body(b), timeout=120)
            if status != 200 or len(out["output"]["embeddings"]) != len(b):
                errors.append(f"{status} {str(out)[:200]}")

    threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    took = time.perf_counter() - t0
    if errors:
        raise SystemExit(f"embed.text failed: {errors[0]}")
    return len(texts) / took


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
    raw(model, texts[:BATCH])  # warm BLAS
    rates: dict[str, list[float]] = {k: [] for k in ("raw", "service", "service_n", "node", "node_n")}
    with tempfile.TemporaryDirectory(prefix="hn-bench-embed-", dir=os.environ.get("HN_BENCH_DIR")) as tmp_name:
        node = None if args.no_node else start_node(Path(tmp_name))
        try:
            rss = None
            if node is not None:
                from hearthnet.testing.rss import PeakRss, node_processes

                pid = node_processes(node.proc.pid)["embedding"]
                peak = PeakRss({"embedding": pid})
                peak.start()
                rss = peak.before["embedding"]
                node_rate(node, texts[:BATCH], 1)  # first call: connections, JSON paths
            for _ in range(args.rounds):
                rates["raw"].append(raw(model, texts))
                rates["service"].append(service(model, texts, 1))
                rates["service_n"].append(service(model, texts, args.clients))
                if node is not None:
                    rates["node"].append(node_rate(node, texts, 1))
                    rates["node_n"].append(node_rate(node, texts, args.clients))
            peak_rss = peak.peaks()["embedding"] if node is not None else None
        finally:
            if node is not None:
                node.stop()
    med = {k: statistics.median(v) for k, v in rates.items() if v}
    r = med["raw"]
    print(f"{args.texts} texts of 8-60 words, batch {BATCH}, medians of {args.rounds} alternating rounds, "
          f"{os.cpu_count()} cores")
    print(f"  raw forward pass (numpy, in process)   {r:7.1f} texts/s")
    rows = [("service", "EmbeddingService.handle, 1 client"),
            ("service_n", f"EmbeddingService.handle, {args.clients} clients"),
            ("node", "node local API embed.text, 1 client"),
            ("node_n", f"node local API embed.text, {args.clients} clients")]
    for key, label in rows:
        if key in med:
            print(f"  {label:<38} {med[key]:7.1f} texts/s   ratio {med[key] / r:.2f}x raw")
    if rss is not None:
        print(f"  embedding worker RSS: {rss / 2**20:.0f} MiB after start (model loaded), "
              f"peak {peak_rss / 2**20:.0f} MiB during the run")


if __name__ == "__main__":
    main()
