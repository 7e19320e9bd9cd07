"""A keep-alive HTTP load generator for the benchmarks: N requests with C in flight,
returns per-request latencies (ms) and failures."""
from __future__ import annotations

import asyncio
import json
import statistics
import time
from dataclasses import dataclass, field


@dataclass
class LoadResult:
    latencies_ms: list[float] = field(default_factory=list)
    failures: int = 0
    seconds: float = 0.0

    @property
    def rps(self) -> float:
        return len(self.latencies_ms) / self.seconds if self.seconds else 0.0

    def pct(self, q: float) -> float:
        lat = sorted(self.latencies_ms)
        return lat[min(len(lat) - 1, int(len(lat) * q))] if lat else float("nan")

    def summary(self) -> dict[str, float]:
        return {"p50_ms": round(self.pct(0.5), 3), "p99_ms": round(self.pct(0.99), 3),
                "rps": round(self.rps, 1), "failures": self.failures,
                "mean_ms": round(statistics.fmean(self.latencies_ms), 3) if self.latencies_ms else 0}


async def _run(url: str, headers: dict[str, str], body: dict, total: int, concurrency: int,
               unix_socket: str | None) -> LoadResult:
    import aiohttp

    result = LoadResult()
    payload = json.dumps(body).encode()
    per = total // concurrency
    conn = (aiohttp.UnixConnector(path=unix_socket, limit=concurrency) if unix_socket
            else aiohttp.TCPConnector(limit=concurrency))
    async with aiohttp.ClientSession(connector=conn) as session:
        async def one_client() -> None:
            for _ in range(per):
                t0 = time.perf_counter()
                async with session.post(url, data=payload, headers=headers) as resp:
                    await resp.read()
                    if resp.status != 200:
                        result.failures += 1
                        continue
                result.latencies_ms.append((time.perf_counter() - t0) * 1000)

        async def warm() -> None:
            async with session.post(url, data=payload, headers=headers) as resp:
                await resp.read()

        await asyncio.gather(*[warm() for _ in range(concurrency)])  # open the connections
        t0 = time.perf_counter()
        await asyncio.gather(*[one_client() for _ in range(concurrency)])
        result.seconds = time.perf_counter() - t0
    return result


def run_load(url: str, headers: dict[str, str], body: dict, total: int, concurrency: int,
             unix_socket: str | None = None) -> LoadResult:
    """`unix_socket`: send the HTTP requests over that socket (the node's local API)."""
    return asyncio.run(_run(url, headers, body, total, concurrency, unix_socket))
