"""Fetching a blob from the neighbours that hold it (issue 7, point 4).

`TransferManager.fetch(manifest_cid, sources)` is a pull model:

1. Every source is asked for the manifest at once. The first one that hashes to the
   CID is used (a source answering a wrong manifest is a bad source and takes no part),
   unless the store holds it already (a fetch being resumed). It is stored first, so the
   store's `missing()` is the progress record: whatever stops a fetch (a cancelled task,
   `kill -9` of the worker, a lost peer), the chunks written so far stay, and the next
   fetch asks only for the rest (`FetchResult.resumed_chunks`).
2. The missing chunk indexes go into ONE shared queue. Each source whose own manifest
   answer checked out gets a puller task that takes a batch (default 8) from the queue,
   asks its source for those chunks and writes each one through the store, which
   verifies it against the manifest's CID (BLAKE3) before it lands. A faster source comes
   back for its next batch sooner, so it naturally takes more.
3. A corrupt chunk, or the chunk where a call broke off (an error, a timeout, a stream
   that ended short: chunks come in the order asked), goes back in the queue, preferably
   for a source that has not failed it yet, and counts one failure of that chunk; the
   batch's chunks after it were never attempted and go back without one. The source gets
   a strike, and after `max_source_failures` strikes it is dropped from this fetch. A
   chunk a source merely lacks (`not_found`: a holder still fetching it itself) counts
   only once every active source has tried it. One chunk failing `max_chunk_failures` (3)
   times ends the fetch with `partition`, and so does every source gone while chunks are
   missing. No source holding the manifest -> `not_found`. No room ->
   `capacity_exceeded` (from the store).

Memory: a puller has at most one batch asked for at a time; the stream's flow-control
window bounds the chunks on their way, and the ones that arrived wait only for that
puller's writer (a thread, several chunks per hop), which holds at most WRITE_BACKLOG
before the puller waits for it. A source that answers `rate_limited` (the peer API's 10
calls a second) is waited for (its `retry_after_ms`), its batch goes back in the queue
with no fault counted, and only a long run of such answers counts as a strike.

Offline, big downloads yield to small ones (issue 10; the rule is the file worker's
`TransferGate`, hearthnet/services/file/yielding.py, given here as `gate`): the chunk
fetching of a blob counts as a download of the manifest's size. A big one's pullers ask
for no chunks while a small download is in progress: each waits before it takes its next
batch, and one in the middle of a batch stops reading after the chunk at hand and puts
the rest back in the queue (no fault of the source's). The chunks written stay; it goes
on as soon as no small download is left or the node is back online.

`BusSource` is a Source over the bus (targeted `file.read` streams to one node);
`find_holders` (hearthnet.blobs.holders) finds the node ids to make sources of.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Callable, Protocol

from hearthnet.blobs.cids import CHUNK_SIZE_BYTES, BlobError, b64decode, check_cid, short
from hearthnet.blobs.holders import find_holders
from hearthnet.blobs.manifest import BlobManifest
from hearthnet.blobs.store import BlobStore
from hearthnet.errors import HearthNetError

log = logging.getLogger("hearthnet.blobs.transfer")

__all__ = ["BusSource", "FetchProgress", "FetchResult", "Source", "TransferManager", "find_holders"]

# Chunks per file.read call. A peer answers at most 10 calls a second per capability
# (the soft rate limit, spec core-bus-transport §7), so the batch caps what one source can
# give: 64 x 256 KiB x 10/s = 168 MB/s (8 gave 21 MB/s). Memory does not grow with it:
# the stream's window and the writer's backlog bound what is held (WRITE_BACKLOG).
DEFAULT_BATCH = 64
WRITE_BACKLOG = 16  # received chunks a puller holds for its writer before it reads on
MAX_CHUNK_FAILURES = 3
MAX_SOURCE_FAILURES = 3
MANIFEST_TIMEOUT_SECONDS = 15.0
CHUNK_TIMEOUT_SECONDS = 30.0  # the longest wait for the next chunk of a batch
BATCH_TIMEOUT_SECONDS = 120.0  # BusSource: the bus deadline of one batch call
PROGRESS_INTERVAL_SECONDS = 0.1
MAX_CHUNK_B64_CHARS = 4 * (CHUNK_SIZE_BYTES // 3 + 1) + 8  # padded, with a little whitespace
# A source answering `rate_limited` (a node's peer port allows 10 calls a second per
# capability) is asked to slow down, not failing: its puller waits `retry_after_ms`
# (within these bounds) and the batch goes back in the queue. Only this long a time of
# such answers with no chunk between them counts a strike (a peer that never serves).
# A time, not a count: several pullers and the small downloads a big one yields to
# share the peer's budget, and on a loaded machine they ran into any count in seconds.
RATE_LIMIT_BACKOFF_SECONDS = (0.05, 5.0)
MAX_RATE_LIMITED_SECONDS = 30.0


class Source(Protocol):
    node_id: str

    async def manifest(self, cid: str) -> dict[str, Any]: ...

    def chunks(self, cid: str, indexes: list[int]) -> AsyncIterator[tuple[int, bytes]]: ...


class Gate(Protocol):
    """What a fetch asks of the yielding rule (TransferGate)."""

    def downloading(self, size: int) -> contextlib.AbstractAsyncContextManager[None]: ...

    def download_holds(self, size: int) -> bool: ...

    async def pace_download(self, size: int) -> None: ...


@dataclass
class FetchProgress:
    done_bytes: int
    total_bytes: int
    sources_active: int
    rate_bytes_s: float


@dataclass
class FetchResult:
    manifest: BlobManifest
    from_nodes: dict[str, int]  # node id -> verified chunks it served
    fetched_chunks: int
    fetched_bytes: int
    ms: int
    resumed_chunks: int  # chunks that were in the store already when the fetch began
    dropped: list[str] = field(default_factory=list)  # sources dropped after repeated failures
    failures: dict[str, int] = field(default_factory=dict)  # node id -> strikes in this fetch


@dataclass
class SourceScore:
    """A node's record across the fetches of one manager (the file worker's lifetime)."""
    served_chunks: int = 0
    failures: int = 0

    @property
    def score(self) -> float:
        return (self.served_chunks + 1) / (self.served_chunks + self.failures + 1)


class _Abort(Exception):
    """Unwinds a puller after the run has failed (the error is in `_Run.error`)."""


class _Run:
    """The shared state of one fetch: the queue of missing chunks and the sources' records."""

    def __init__(self, manifest: BlobManifest, missing: list[int], sources: list[Source],
                 max_chunk_failures: int, max_source_failures: int,
                 progress: Callable[[FetchProgress], None] | None) -> None:
        self.manifest = manifest
        self.max_chunk_failures, self.max_source_failures = max_chunk_failures, max_source_failures
        # Indexes sharing one chunk CID (a file of zeros) are fetched once, written once.
        self.same: dict[int, list[int]] = {}
        first: dict[str, int] = {}
        for i in missing:
            self.same.setdefault(first.setdefault(manifest.chunks[i], i), []).append(i)
        self.pending: deque[int] = deque(self.same)  # the shared queue; retries go to the back
        self.in_flight = 0
        self.peak_in_flight = 0
        self.failures: dict[int, int] = {}
        self.failed_by: dict[int, set[str]] = {}
        self.strikes: dict[str, int] = {s.node_id: 0 for s in sources}
        self.limited: dict[str, float] = {}  # since when a source answers only rate_limited
        self.reasons: dict[str, str] = {}
        self.active: set[str] = {s.node_id for s in sources}
        self.validated: set[str] = set()  # sources whose manifest answer checked out
        self.dropped: list[str] = []
        self.from_nodes: dict[str, int] = {}
        self.fetched_chunks = self.fetched_bytes = 0
        self.total = manifest.size_bytes
        self.done_bytes = self.total - sum(manifest.chunk_size(i) for i in missing)
        self.error: HearthNetError | None = None
        self.over = asyncio.Event()
        self.changed = asyncio.Event()
        self.started = time.monotonic()
        self.progress = progress
        self.last_progress = 0.0
        if not self.pending:
            self.over.set()

    # ------------------------------------------------------------------ the queue

    def take(self, node_id: str, batch: int) -> list[int] | None:
        """Up to `batch` indexes for this source ([] = wait for a change, None = stop).
        Chunks this source failed are left for the others while another active source
        has not failed them."""
        if self.over.is_set() or node_id not in self.active:
            return None
        picked, skipped = [], []
        while self.pending and len(picked) < batch:  # O(batch) unless this source failed many
            i = self.pending.popleft()
            if node_id in self.failed_by.get(i, ()):
                skipped.append(i)
            else:
                picked.append(i)
        self.pending.extendleft(reversed(skipped))
        if not picked:  # only chunks this source failed are left: take those every other one failed too
            others = self.active - {node_id}
            picked = [i for i in self.pending if others <= self.failed_by.get(i, set())][:batch]
            if picked:
                taken = set(picked)
                self.pending = deque(i for i in self.pending if i not in taken)
        self.in_flight += len(picked)
        self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
        return picked

    def chunk_done(self, node_id: str, i: int, size: int) -> None:
        self.in_flight -= 1
        self.limited.pop(node_id, None)
        self.fetched_chunks += 1
        self.fetched_bytes += size
        self.from_nodes[node_id] = self.from_nodes.get(node_id, 0) + 1
        self.done_bytes += sum(self.manifest.chunk_size(j) for j in self.same[i])
        if not self.pending and not self.in_flight:
            self.over.set()
        self.report(force=self.over.is_set())
        self._wake()

    def chunk_failed(self, node_id: str, i: int, *, lacking: bool = False) -> None:
        """Chunk `i` failed at this source: back in the queue, or the fetch fails after
        `max_chunk_failures`. A source that merely lacks it (a holder still fetching it
        itself) counts only once every active source has tried it."""
        self.in_flight -= 1
        tried = self.failed_by.setdefault(i, set())
        tried.add(node_id)
        if not lacking or not self.active - tried:
            self.failures[i] = self.failures.get(i, 0) + 1
        if self.failures.get(i, 0) >= self.max_chunk_failures:
            names = ", ".join(sorted(_short(n) for n in tried))
            self.fail(HearthNetError("partition", f"chunk {i} of {short(self.manifest.cid)} failed "
                                                  f"{self.failures[i]} times (from {names}); try again "
                                                  f"when more holders are reachable"))
        else:
            self.pending.append(i)
        self._wake()

    def requeue(self, i: int) -> None:
        self.in_flight -= 1
        self.pending.append(i)
        self._wake()

    def give_back(self, indexes: list[int]) -> None:
        """A batch's rest, not attempted (a big download yielding): first in the queue again."""
        self.in_flight -= len(indexes)
        self.pending.extendleft(reversed(indexes))
        self._wake()

    # ------------------------------------------------------------------ sources

    def strike(self, node_id: str, reason: str) -> None:
        self.strikes[node_id] = self.strikes.get(node_id, 0) + 1
        self.reasons[node_id] = reason
        log.info("a source failed", extra={"node": node_id, "reason": reason, "cid": self.manifest.cid})
        if self.strikes[node_id] >= self.max_source_failures and node_id not in self.dropped:
            self.dropped.append(node_id)
            log.warning("source dropped from the fetch", extra={"node": node_id, "cid": self.manifest.cid})
            self.leave(node_id)

    def leave(self, node_id: str, reason: str | None = None) -> None:
        """A source takes no more part (dropped, no manifest, or finished)."""
        if reason is not None:
            self.reasons.setdefault(node_id, reason)
        if node_id not in self.active:
            return
        self.active.discard(node_id)
        if not self.active and not self.over.is_set():
            left = len(self.pending) + self.in_flight
            if not self.validated:
                self.fail(HearthNetError("not_found", f"no source holds {short(self.manifest.cid)}",
                                         sources=dict(self.reasons)))
            elif left:
                self.fail(HearthNetError("partition", f"every source is gone with {left} chunks of "
                                                      f"{short(self.manifest.cid)} missing; the chunks "
                                                      f"fetched so far are kept, fetch again to resume",
                                         sources=dict(self.reasons)))
        self._wake()

    def fail(self, error: HearthNetError) -> None:
        if self.error is None:
            self.error = error
        self.over.set()
        self._wake()

    # ------------------------------------------------------------------ waiting and progress

    def _wake(self) -> None:
        self.changed.set()
        self.changed = asyncio.Event()

    def report(self, force: bool = False) -> None:
        now = time.monotonic()
        if self.progress is None or (not force and now - self.last_progress < PROGRESS_INTERVAL_SECONDS):
            return
        self.last_progress = now
        rate = self.fetched_bytes / max(now - self.started, 1e-6)
        try:
            self.progress(FetchProgress(self.done_bytes, self.total, len(self.active), rate))
        except Exception:  # a broken display must not fail the transfer
            log.exception("progress callback failed")


class _Writer:
    """Writes one puller's received chunks in a thread, several per thread hop when they
    arrive faster than the disk takes them, while the puller reads on. The store hashes
    each chunk against the manifest's CID before it lands."""

    def __init__(self, store: BlobStore, run: _Run, node_id: str) -> None:
        self.store, self.run, self.node_id = store, run, node_id
        self.items: list[tuple[int, Any]] = []
        self.task: asyncio.Future | None = None
        self.drained = asyncio.Event()  # set each time a hop of chunks has been written

    def add(self, i: int, data: Any) -> None:
        self.items.append((i, data))
        if self.task is None:
            self.task = asyncio.ensure_future(self._drain())

    async def flush(self) -> None:
        if self.task is not None:
            await self.task

    async def room(self) -> None:
        """Wait while WRITE_BACKLOG chunks or more wait for the writer (a disk slower
        than the network must not let chunks pile up in memory)."""
        while len(self.items) >= WRITE_BACKLOG and self.task is not None and not self.task.done():
            self.drained.clear()
            waiter = asyncio.ensure_future(self.drained.wait())
            try:
                await asyncio.wait({waiter, self.task}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                waiter.cancel()

    def cancel(self) -> None:
        if self.task is not None:
            self.task.cancel()

    async def _drain(self) -> None:
        run, node = self.run, self.node_id
        while self.items:
            items, self.items = self.items, []
            written = await asyncio.to_thread(self._write_many, items)
            self.drained.set()
            for i, size, error in written:
                if error is None:
                    run.chunk_done(node, i, size)
                elif error.code == "bad_request":
                    run.chunk_failed(node, i)
                    run.strike(node, f"chunk {i} does not hash to its CID")
                else:  # capacity_exceeded, a disk error: no other source helps
                    run.fail(error)
                    self.items = []
                    raise _Abort()
        self.task = None

    def _write_many(self, items: list[tuple[int, Any]]) -> list[tuple[int, int, BlobError | None]]:
        out: list[tuple[int, int, BlobError | None]] = []
        for i, data in items:
            try:
                self.store.write_chunk(self.run.manifest.chunks[i], data)
            except BlobError as exc:
                out.append((i, 0, exc))
                if exc.code != "bad_request":
                    break
                continue
            except TypeError:  # not bytes at all
                out.append((i, 0, BlobError("bad_request", f"chunk {i} is not bytes")))
                continue
            except Exception as exc:  # unforeseen: fail the fetch rather than lose track of the chunk
                log.exception("writing a chunk failed")
                out.append((i, 0, BlobError("internal_error", f"cannot store chunk {i}: {exc}")))
                break
            out.append((i, len(data), None))
        return out


class TransferManager:
    def __init__(self, store: BlobStore, *, batch: int = DEFAULT_BATCH,
                 max_chunk_failures: int = MAX_CHUNK_FAILURES,
                 max_source_failures: int = MAX_SOURCE_FAILURES,
                 manifest_timeout: float = MANIFEST_TIMEOUT_SECONDS,
                 chunk_timeout: float = CHUNK_TIMEOUT_SECONDS, gate: Gate | None = None) -> None:
        if batch < 1 or max_chunk_failures < 1 or max_source_failures < 1:
            raise ValueError("batch and the failure limits must be at least 1")
        self.store = store
        self.batch = batch
        self.max_chunk_failures, self.max_source_failures = max_chunk_failures, max_source_failures
        self.manifest_timeout, self.chunk_timeout = manifest_timeout, chunk_timeout
        self.scores: dict[str, SourceScore] = {}
        self.gate = gate  # offline: big downloads yield to small ones (None: never)
        self.peak_in_flight = 0  # of the last fetch: at most len(sources) x batch

    def score(self, node_id: str) -> float:
        return self.scores.get(node_id, SourceScore()).score

    async def fetch(self, manifest_cid: str, sources: list[Source], *,
                    progress: Callable[[FetchProgress], None] | None = None) -> FetchResult:
        check_cid(manifest_cid)
        started = time.monotonic()
        sources = list({s.node_id: s for s in sources}.values())
        local = await asyncio.to_thread(self._local_manifest, manifest_cid)
        if local is not None and not await asyncio.to_thread(self.store.missing, local):
            return FetchResult(local, {}, 0, 0, _ms(started), len(local.chunks))
        if not sources:
            raise BlobError("not_found", f"no known holder of {short(manifest_cid)}")
        asks = {s.node_id: asyncio.ensure_future(self._ask_manifest(s, manifest_cid)) for s in sources}
        pullers: list[asyncio.Future] = []
        try:
            manifest = local or await self._first_manifest(manifest_cid, asks)
            missing = await asyncio.to_thread(self._prepare, manifest, local is not None)
            run = _Run(manifest, missing, sources, self.max_chunk_failures, self.max_source_failures, progress)
            run.report(force=True)
            async with self._downloading(manifest.size_bytes):
                pullers = [asyncio.ensure_future(self._puller(run, s, asks[s.node_id])) for s in sources]
                await run.over.wait()
        finally:
            for task in [*pullers, *asks.values()]:
                task.cancel()
            await asyncio.gather(*pullers, *asks.values(), return_exceptions=True)
        self.peak_in_flight = run.peak_in_flight
        self._keep_scores(run)
        if run.error is not None:
            raise run.error
        await asyncio.to_thread(self._finish, manifest)
        return FetchResult(manifest, dict(run.from_nodes), run.fetched_chunks, run.fetched_bytes, _ms(started),
                           len(manifest.chunks) - len(missing), list(run.dropped),
                           {n: k for n, k in run.strikes.items() if k})

    def _downloading(self, size: int) -> contextlib.AbstractAsyncContextManager[Any]:
        return self.gate.downloading(size) if self.gate is not None else contextlib.nullcontext()

    def _yields(self, run: _Run) -> bool:
        return self.gate is not None and self.gate.download_holds(run.total)

    # ------------------------------------------------------------------ the manifest

    def _local_manifest(self, cid: str) -> BlobManifest | None:
        if not self.store.has_manifest(cid):
            return None
        try:
            return self.store.read_manifest(cid)
        except BlobError:  # corrupt (and removed): fetch it again
            return None

    def _prepare(self, manifest: BlobManifest, stored: bool) -> list[int]:
        """Room for the rest of the blob first (a fetch that cannot fit fails before it
        starts), then the manifest, the progress record; the indexes still missing."""
        missing = self.store.missing(manifest)
        manifest_bytes = 0 if stored else 100 * (len(manifest.chunks) + 10)
        self.store.ensure_room(sum(manifest.chunk_size(i) for i in missing) + manifest_bytes)
        if not stored:
            self.store.write_manifest(manifest)
        return missing

    async def _ask_manifest(self, source: Source, cid: str) -> BlobManifest:
        async def ask() -> dict[str, Any]:
            while True:  # a source that says "slow down" is asked again, within the timeout
                try:
                    return await source.manifest(cid)
                except HearthNetError as exc:
                    wait = _backoff(exc)
                    if wait is None:
                        raise
                    await asyncio.sleep(wait)

        doc = await asyncio.wait_for(ask(), self.manifest_timeout)
        return BlobManifest.from_wire(doc, expected_cid=cid)

    async def _first_manifest(self, cid: str, asks: dict[str, asyncio.Future]) -> BlobManifest:
        """The first answer that hashes to `cid`; the other asks run on (each puller
        waits for its own source's answer before it takes any chunk)."""
        waiting = set(asks.values())
        while waiting:
            done, waiting = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                if not task.cancelled() and task.exception() is None:
                    return task.result()
        reasons = {node: _reason(t.exception()) for node, t in asks.items() if not t.cancelled()}
        raise BlobError("not_found", f"no source holds {short(cid)}", sources=reasons)

    # ------------------------------------------------------------------ pulling

    async def _puller(self, run: _Run, source: Source, ask: asyncio.Future) -> None:
        node = source.node_id
        try:
            await ask
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # no manifest, a wrong one, or no answer: no part in this fetch
            run.leave(node, f"manifest: {_reason(exc)}")
            return
        run.validated.add(node)
        try:
            while True:
                if self.gate is not None:  # offline: a big download waits while a small one runs
                    await self.gate.pace_download(run.total)
                changed = run.changed
                batch = run.take(node, self.batch)
                if batch is None:
                    return
                if not batch:
                    await changed.wait()
                    continue
                await self._pull(run, source, batch)
        except _Abort:
            return
        except Exception as exc:  # a bug must end the fetch, not leave it waiting for lost chunks
            log.exception("puller failed")
            run.fail(HearthNetError("internal_error", f"fetch from {_short(node)} failed: {exc}"))
        finally:
            run.leave(node)

    async def _pull(self, run: _Run, source: Source, batch: list[int]) -> None:
        """Ask one source for one batch; every index ends done or failed (back in the queue).
        Chunks are written while the next ones arrive (all within this batch)."""
        node, want, received = source.node_id, set(batch), set()
        reason, lacking, backoff, paused = None, False, None, False
        writer = _Writer(self.store, run, node)
        frames = source.chunks(run.manifest.cid, list(batch))
        try:
            while len(received) < len(want) and node in run.active and not run.over.is_set():
                try:
                    i, data = await asyncio.wait_for(frames.__anext__(), self.chunk_timeout)
                except StopAsyncIteration:
                    break
                if i not in want or i in received:
                    reason = f"sent chunk {i}, which it was not asked for"
                    break
                received.add(i)
                writer.add(i, data)
                await writer.room()
                if self._yields(run):  # a small download began: stop here, the rest goes back
                    paused = True
                    break
        except asyncio.CancelledError:
            writer.cancel()
            raise
        except asyncio.TimeoutError:
            reason = f"no chunk for {self.chunk_timeout:g} s"
        except Exception as exc:
            backoff = _backoff(exc)
            reason, lacking = _reason(exc), isinstance(exc, HearthNetError) and exc.code == "not_found"
        finally:
            aclose = getattr(frames, "aclose", None)
            if aclose is not None:
                with contextlib.suppress(Exception):
                    await aclose()
        await writer.flush()
        left = [i for i in batch if i not in received]
        if paused:
            run.give_back(left)
            return
        if node not in run.active or run.over.is_set():
            for i in left:  # dropped mid-batch (or the fetch is over): not these chunks' fault
                run.requeue(i)
            return
        if backoff is not None:  # "slow down": no one's fault, unless it never ends
            await self._back_off(run, node, left, backoff)
            return
        if left:  # chunks come in the order asked: the first one missing is where it broke
            run.chunk_failed(node, left[0], lacking=lacking)
            for i in left[1:]:  # never attempted: back in the queue, no fault of theirs
                run.requeue(i)
        if left or reason:
            run.strike(node, reason or f"did not send {len(left)} of {len(want)} chunks")

    @staticmethod
    async def _back_off(run: _Run, node: str, left: list[int], seconds: float) -> None:
        for i in left:
            run.requeue(i)
        now = time.monotonic()
        since = run.limited.setdefault(node, now)  # its first "slow down" since a chunk came
        if now - since >= MAX_RATE_LIMITED_SECONDS:
            run.limited[node] = now
            run.strike(node, f"answered only rate_limited for {MAX_RATE_LIMITED_SECONDS:g} s")
        await asyncio.sleep(seconds)  # this puller only; the other sources pull on

    def _finish(self, manifest: BlobManifest) -> None:
        """The blob is complete (or the store lost chunks under us: GC, a disk fault)."""
        lost = self.store.missing(manifest)
        if lost:
            raise BlobError("partition", f"{len(lost)} chunks of {short(manifest.cid)} vanished during the "
                                         f"fetch; fetch again")
        if self.store.has_manifest(manifest.cid):
            self.store.read_manifest(manifest.cid)  # refresh its LRU stamp before any GC
        else:  # evicted by a GC while we fetched: the chunks are all here, so keep it
            self.store.write_manifest(manifest)
        self.store.collect_if_needed()

    def _keep_scores(self, run: _Run) -> None:
        for node, n in run.from_nodes.items():
            self.scores.setdefault(node, SourceScore()).served_chunks += n
        for node, n in run.strikes.items():
            self.scores.setdefault(node, SourceScore()).failures += n


# --------------------------------------------------------------------------- the bus source


class BusSource:
    """A Source over the bus: targeted `file.read` stream calls to one node (its peer
    proxy when remote). Frames: `manifest` first, then `chunk` {i, cid, size_bytes,
    data_b64}, ending with `done` or `error`."""

    def __init__(self, bus: Any, node_id: str, caller: str, *,
                 manifest_timeout: float = MANIFEST_TIMEOUT_SECONDS,
                 batch_timeout: float = BATCH_TIMEOUT_SECONDS) -> None:
        self.bus = bus
        self.node_id = node_id
        self.caller = caller
        self.manifest_timeout, self.batch_timeout = manifest_timeout, batch_timeout

    def _read(self, cid: str, chunks: list[int], timeout: float) -> AsyncIterator[tuple[str, Any]]:
        return self.bus.stream("file.read", "1.0", {"params": {}, "input": {"cid": cid, "chunks": chunks}},
                               caller=self.caller, node=self.node_id, timeout=timeout)

    async def manifest(self, cid: str) -> dict[str, Any]:
        async with contextlib.aclosing(self._read(cid, [], self.manifest_timeout)) as frames:
            async for event, data in frames:
                if event == "manifest" and isinstance(data, dict):
                    return data
                _check_end(event, data, self.node_id)
                if event == "done":
                    break
        raise HearthNetError("bad_request", f"{_short(self.node_id)} answered file.read without a manifest")

    async def chunks(self, cid: str, indexes: list[int]) -> AsyncIterator[tuple[int, bytes]]:
        async with contextlib.aclosing(self._read(cid, list(indexes), self.batch_timeout)) as frames:
            async for event, data in frames:
                if event == "chunk":
                    yield _chunk_frame(data, self.node_id)
                    continue
                _check_end(event, data, self.node_id)
                if event == "done":
                    return


def _chunk_frame(data: Any, node_id: str) -> tuple[int, bytes]:
    i = data.get("i") if isinstance(data, dict) else None
    if not isinstance(i, int) or isinstance(i, bool) or i < 0:
        raise HearthNetError("bad_request", f"{_short(node_id)} sent a chunk frame without an index")
    text = data.get("data_b64")
    if isinstance(text, str) and len(text) > MAX_CHUNK_B64_CHARS:  # no decoding what cannot be a chunk
        raise HearthNetError("bad_request", f"{_short(node_id)} sent {len(text)} base64 characters for chunk {i}")
    return i, b64decode(text, f"chunk {i} data_b64")


def _check_end(event: str, data: Any, node_id: str) -> None:
    if event == "error":
        raise HearthNetError.from_wire(data if isinstance(data, dict) else
                                       {"error": "internal_error", "message": f"{_short(node_id)} failed"})


# --------------------------------------------------------------------------- helpers


def _reason(exc: BaseException | None) -> str:
    if isinstance(exc, HearthNetError):
        return f"{exc.code}: {exc.message}"
    if isinstance(exc, asyncio.TimeoutError):
        return "timeout: no answer"
    return f"{type(exc).__name__}: {exc}"


def _backoff(exc: BaseException) -> float | None:
    """Seconds to wait before asking a source that answered `rate_limited` again; None
    for any other error."""
    if not isinstance(exc, HearthNetError) or exc.code != "rate_limited":
        return None
    ms = exc.details.get("retry_after_ms")
    low, high = RATE_LIMIT_BACKOFF_SECONDS
    seconds = ms / 1000 if isinstance(ms, (int, float)) and not isinstance(ms, bool) else low
    return min(max(seconds, low), high)


def _short(node_id: str) -> str:
    return node_id[:16]


def _ms(started: float) -> int:
    return int((time.monotonic() - started) * 1000)
