"""The file service (spec svc-market-chat-file §3; notes/files-design.md): the `file`
worker, the only writer of `<DATA>/blobs`. Every blocking store call runs in a thread
(`asyncio.to_thread`); events go through the ledger (`community.log.append`).

Capabilities (all @1.0; bodies {"params": {}, "input": {...}}):

    file.read       member   {cid, chunks?} chunk CID -> {cid, size_bytes, data_b64};
                             manifest CID -> stream manifest, chunk x N, done {chunks, ms}
    file.list       member   {prefix?} -> {cids, entries: [{cid, size_bytes, filename}]}
    file.advertise  member   {cids} -> {recorded}: the caller holds them (in-memory index)
    file.put        trusted  {manifest} -> {manifest_cid, needed};
                             {manifest_cid, chunks: [{i, cid, data_b64}]} -> {manifest_cid, received, needed}
    file.add        self     {path, pin?, mime_type?} -> stream progress, done {manifest, pinned, added}
    file.get        self     {cid, out?, sources?} -> stream progress, done {manifest, out, from,
                             resumed_chunks, dropped, failures, ms}
    file.ls         self     {} -> {files, usage}
    file.pin/unpin  self     {cid} -> {cid, pinned}
    file.gc         self     {} -> {freed_bytes, evicted}
    file.status     self     {} -> {blobs, complete, pinned, store_bytes, capacity_bytes, free_bytes, fraction,
                                   transfers: {big_file_bytes, yielding, small_streams, big_chunk_waits,
                                               small_downloads, big_download_waits}}
    file.verify     self     {sample?} -> {checked, bad, corrupt}: a random sample of chunks re-hashed
    file.import     self     {manifest, parts} -> stream progress, done {cid, added}

Events: `file.cid.advertised` {cid, sizes_bytes} when a blob becomes complete here (add,
put, fetch, import); `file.cid.unpinned` {cid} on unpin.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import threading
import time
from collections import OrderedDict
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, AsyncIterator, Callable, Protocol

from hearthnet.blobs.cids import CHUNK_SIZE_BYTES, BlobError, b64decode, b64encode, check_cid, hash_bytes, short
from hearthnet.blobs.manifest import MAX_MIME_CHARS, BlobManifest
from hearthnet.blobs.store import BlobStore
from hearthnet.bus.service import Capability, Request, done_data
from hearthnet.errors import HearthNetError, IdentityError
from hearthnet.identity.keys import parse_node_id
from hearthnet.identity.manifest import rfc3339
from hearthnet.services.file.index import CompleteIndex, HolderIndex
from hearthnet.services.file.progress import Ticker
from hearthnet.units import size_text

log = logging.getLogger("hearthnet.file")

Frames = AsyncIterator[tuple[str, dict[str, Any]]]

PUT_BATCH = 16  # chunks per file.put call (16 x 256 KiB, base64: ~5.6 MB < the 16 MiB body cap)
MANIFEST_CACHE = 8  # verified manifests file.read keeps (see _held_manifest)
UNARY_READ_MAX = 16  # chunks a non-stream file.read of a manifest may carry
LIST_MAX = 1000
ADVERTISE_MAX = 1000
SOURCES_MAX = 64
VERIFY_DEFAULT, VERIFY_MAX = 32, 1024
COUNT_TTL_SECONDS = 10.0  # how long file.status reuses its count of stored manifests
LEDGER_TIMEOUT_SECONDS = 10.0
TELL_TIMEOUT_SECONDS = 5.0  # a direct file.advertise to one peer
MIN_PREFIX_HEX = 4
HEX = frozenset("0123456789abcdef")


class Bus(Protocol):
    async def call(self, cap: str, version: str, body: Any, *, caller: str = "", trace: str = "",
                   timeout: float | None = None, local_only: bool = False,
                   node: str | None = None) -> dict[str, Any]: ...


def bad(message: str) -> BlobError:
    return BlobError("bad_request", message)


# --------------------------------------------------------------------------- input checks


def _cid(inp: dict[str, Any], key: str = "cid") -> str:
    return check_cid(inp.get(key), f"input.{key}")


def _abs_path(value: Any, key: str) -> Path:
    if not isinstance(value, str) or not value or "\x00" in value or not os.path.isabs(value):
        raise bad(f"input.{key} must be an absolute path on this machine")
    return Path(value)


def _flag(value: Any, key: str) -> bool:
    if value is None:
        return False
    if not isinstance(value, bool):
        raise bad(f"input.{key} must be true or false")
    return value


def _mime(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not 0 < len(value) <= MAX_MIME_CHARS:
        raise bad(f"input.mime_type must be a string of 1..{MAX_MIME_CHARS} characters")
    return value


def _index(value: Any, n: int, key: str) -> int:
    if type(value) is not int or not 0 <= value < n:
        raise bad(f"{key} must be a chunk index 0..{n - 1}")
    return value


def _indexes(raw: Any, n: int) -> list[int]:
    """`chunks` of file.read: None = all, else distinct indexes in the order given."""
    if raw is None:
        return list(range(n))
    if not isinstance(raw, list) or len(raw) > n:
        raise bad(f"input.chunks must be a list of at most {n} chunk indexes")
    out = [_index(i, n, f"input.chunks[{k}]") for k, i in enumerate(raw)]
    if len(set(out)) != len(out):
        raise bad("input.chunks lists an index twice")
    return out


def _node_ids(raw: Any) -> list[str]:
    if raw is None:
        return []
    if not isinstance(raw, list) or len(raw) > SOURCES_MAX:
        raise bad(f"input.sources must be a list of at most {SOURCES_MAX} node ids")
    for k, node in enumerate(raw):
        try:
            parse_node_id(node)
        except IdentityError:
            raise bad(f"input.sources[{k}] is not a full node id") from None
    return list(dict.fromkeys(raw))


def _hex_prefix(raw: Any) -> str:
    """file.list's prefix: a CID or 4..64 hex digits of one (`blake3:` optional)."""
    if raw is None:
        return ""
    text = raw.removeprefix("blake3:") if isinstance(raw, str) else None
    if text is None or not MIN_PREFIX_HEX <= len(text) <= 64 or not set(text) <= HEX:
        raise bad(f"input.prefix must be a CID or {MIN_PREFIX_HEX}..64 lowercase hex digits of one")
    return text


def _file_size(path: Path) -> int:
    try:
        st = path.stat()
    except FileNotFoundError:
        raise BlobError("not_found", f"{path} does not exist") from None
    except PermissionError:
        raise BlobError("unauthorized", f"{path} cannot be read (permission denied)") from None
    if not path.is_file():
        raise bad(f"{path} is not a regular file")
    return st.st_size


def _ms(t0: float) -> int:
    return int((time.monotonic() - t0) * 1000)




# --------------------------------------------------------------------------- the service


class FileService:
    name = "file"

    def __init__(self, store: BlobStore, node_id: str, bus: Bus, follow_mode: bool = False) -> None:
        from hearthnet.services.file.yielding import TransferGate

        self.store = store
        self.gate = TransferGate()  # offline: big transfers (served and fetched) yield to small ones
        self._follow_mode = follow_mode
        self._follow: asyncio.Task | None = None
        self.node_id = node_id
        self.bus = bus
        self.holders = HolderIndex()
        self.complete = CompleteIndex()
        self._advertised: set[str] = set()  # advertised by this process run
        self._scan: asyncio.Task | None = None
        self._count: tuple[float, int] = (0.0, 0)  # (when, stored manifests)
        self._note = "scanning the blob store"
        self._telling: set[asyncio.Task] = set()  # background file.advertise fan-outs
        self._manager: Any = None  # the TransferManager: one for the worker's life (it keeps sources' scores)
        self._manifests: OrderedDict[str, tuple[tuple[int, int], BlobManifest]] = OrderedDict()  # file.read's
        self._manifests_lock = threading.Lock()

    @classmethod
    def from_config(cls, cfg: Any) -> "FileService":
        from hearthnet.blobs.store import open_store
        from hearthnet.bus.client import BusClient
        from hearthnet.identity import keys

        kp = keys.load(cfg.identity.keys_dir)
        try:
            store = open_store(cfg)
        except OSError as exc:  # e.g. blobs_dir on a read-only or missing mount
            raise HearthNetError("internal_error", f"cannot open the blob store {cfg.file.blobs_dir}: "
                                                   f"{exc.strerror or exc}") from None
        return cls(store, kp.node_id_full, BusClient(cfg.paths.broker_clients_endpoint),
                   follow_mode=cfg.emergency.enabled)

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        start = getattr(self.bus, "start", None)
        if start is not None:
            await start()
        # Counting a large store takes a while: the worker announces itself at once and
        # the capabilities that need the count wait for it.
        self._scan = asyncio.ensure_future(self._initial_scan())
        if self._follow_mode:
            from hearthnet.emergency.follow import follow_mode

            self._follow = asyncio.ensure_future(follow_mode(self.bus, self.gate.set_mode, caller=self.node_id))

    async def stop(self) -> None:
        for task in (self._scan, self._follow):
            if task is not None:
                task.cancel()
        for task in list(self._telling):
            task.cancel()
        close = getattr(self.bus, "close", None)
        if close is not None:
            await close()

    def health(self) -> dict[str, Any]:
        return {"note": self._note}

    async def _initial_scan(self) -> None:
        # store_bytes() counts once, then keeps count: done here, off the event loop
        blobs, size = await asyncio.to_thread(lambda: (self.store.blobs(), self.store.store_bytes()))
        self.complete.reset({"cid": b["cid"], "size_bytes": b["size_bytes"], "filename": b["filename"]}
                            for b in blobs if b["complete"])
        self._note = f"{len(self.complete)} blobs, {size_text(size)}"
        self._count = (time.monotonic(), len(blobs))
        log.info("blob store scanned", extra={"blobs": len(blobs), "complete": len(self.complete),
                                               "store_bytes": size})

    async def ready(self) -> None:
        if self._scan is None:  # used without start() (unit tests)
            self._scan = asyncio.ensure_future(self._initial_scan())
        await asyncio.shield(self._scan)

    def _refresh_note(self) -> None:
        self._count = (0.0, self._count[1])  # file.status counts the stored manifests again
        if self._scan is None or not self._scan.done():
            return  # the scan sets the note (and the store's byte count) when it is done
        self._note = f"{len(self.complete)} blobs, {size_text(self.store.store_bytes())}"

    # ------------------------------------------------------------------ capabilities

    def capabilities(self) -> list[Capability]:
        obj, cid, text = {"type": "object"}, {"type": "string"}, {"type": "string"}
        ints = {"type": "array", "items": {"type": "integer", "minimum": 0}}
        strs = {"type": "array", "items": {"type": "string"}}
        frames = {"type": "object", "properties": {"progress": obj, "done": obj}}

        def cap(name: str, handler: Any, trust: str, props: dict[str, Any], *, conc: int, timeout: int,
                stream: dict[str, Any] | None = None) -> Capability:
            schema = {"type": "object", "properties": {"params": obj, "input": {"type": "object",
                                                                                "properties": props}}}
            return Capability(name=name, handler=handler, stability="beta", trust_required=trust,
                              request_schema=schema, response_schema=obj, stream_schema=stream,
                              max_concurrent=conc, timeout_seconds=timeout, idempotent=True)

        read_frames = {"type": "object", "properties": {"manifest": obj, "chunk": obj, "done": obj}}
        return [
            # the contract's four (spec §3.5: concurrency, trust and timeouts)
            cap("file.read", self.read, "member", {"cid": cid, "chunks": ints}, conc=8, timeout=300,
                stream=read_frames),
            cap("file.list", self.list, "member", {"prefix": text}, conc=4, timeout=5),
            cap("file.advertise", self.advertise, "member", {"cids": strs}, conc=16, timeout=5),
            cap("file.put", self.put, "trusted", {"manifest": obj, "manifest_cid": cid, "chunks":
                                                  {"type": "array", "items": obj}}, conc=2, timeout=600),
            # the owner's, through the local API (never callable by peers)
            cap("file.add", self.add, "self", {"path": text, "pin": {"type": "boolean"}, "mime_type": text},
                conc=2, timeout=3600, stream=frames),
            cap("file.get", self.get, "self", {"cid": cid, "out": text, "sources": strs}, conc=4,
                timeout=3600, stream=frames),
            cap("file.ls", self.ls, "self", {}, conc=4, timeout=60),
            cap("file.pin", self.pin, "self", {"cid": cid}, conc=4, timeout=10),
            cap("file.unpin", self.unpin, "self", {"cid": cid}, conc=4, timeout=15),
            cap("file.gc", self.gc, "self", {}, conc=1, timeout=600),
            cap("file.status", self.status, "self", {}, conc=8, timeout=10),
            cap("file.verify", self.verify, "self", {"sample": {"type": "integer", "minimum": 1}}, conc=2,
                timeout=300),
            cap("file.import", self.import_blob, "self", {"manifest": obj, "parts": strs}, conc=2,
                timeout=3600, stream=frames),
        ]

    # ------------------------------------------------------------------ helpers

    async def _ledger(self, cap: str, inp: dict[str, Any]) -> dict[str, Any]:
        out = await self.bus.call(cap, "1.0", {"params": {}, "input": inp}, caller=self.node_id,
                                  timeout=LEDGER_TIMEOUT_SECONDS, node=self.node_id)
        return out.get("output") or {}

    async def _event(self, event_type: str, data: dict[str, Any]) -> bool:
        """Append one of our events; a ledger that does not answer costs the event, not
        the operation that caused it (the blob is stored all the same)."""
        try:
            await self._ledger("community.log.append", {"event_type": event_type, "data": data})
        except HearthNetError as exc:
            log.warning("could not append an event", extra={"event_type": event_type, "code": exc.code,
                                                             "reason": exc.message})
            return False
        return True

    async def _blob_complete(self, manifest: BlobManifest) -> None:
        """A blob became complete here: list it and tell the community we hold it."""
        await self.ready()  # the scan's listing must not overwrite this one
        self.complete.add(manifest.cid, manifest.size_bytes, manifest.filename)
        gc = await asyncio.to_thread(self.store.collect_if_needed)  # above gc_threshold: evict (LRU)
        self._forget(list(gc.evicted or []))
        if manifest.cid not in self.complete:
            return  # evicted at once (all else pinned or newer): nothing to advertise
        if manifest.cid in self._advertised:
            return
        if await self._event("file.cid.advertised", {"cid": manifest.cid, "sizes_bytes": manifest.size_bytes}):
            self._advertised.add(manifest.cid)
        # The event reaches other nodes with the next sync round; the peers we can reach
        # hear it now (spec §3.4: best-effort direct file.advertise), in the background.
        task = asyncio.ensure_future(self._tell_peers([manifest.cid]))
        self._telling.add(task)
        task.add_done_callback(self._telling.discard)

    async def _tell_peers(self, cids: list[str]) -> None:
        admin = getattr(self.bus, "admin", None)
        if admin is None:
            return
        try:
            caps = (await admin("caps")).get("capabilities") or []
        except (HearthNetError, OSError) as exc:
            log.info("no capability list from the broker", extra={"reason": str(exc)})
            return
        peers = {c.get("node_id") for c in caps if isinstance(c, dict) and c.get("name") == "file.advertise"
                 and not c.get("local", True) and c.get("node_id") != self.node_id}

        async def tell(node: str) -> None:
            try:
                await self.bus.call("file.advertise", "1.0", {"params": {}, "input": {"cids": cids}},
                                    caller=self.node_id, timeout=TELL_TIMEOUT_SECONDS, node=node)
            except HearthNetError as exc:
                log.info("file.advertise to a peer failed", extra={"node": node, "code": exc.code})

        await asyncio.gather(*(tell(n) for n in peers if isinstance(n, str)))

    def _forget(self, cids: list[str]) -> None:
        for cid in cids:
            self.complete.discard(cid)
            self._advertised.discard(cid)
        self._refresh_note()

    @staticmethod
    async def _answer(req: Request, frames: Frames) -> Any:
        """A stream for a stream call; otherwise the `done` frame's data as the output."""
        return frames if req.stream else {"output": await done_data(frames), "meta": {}}

    # ------------------------------------------------------------------ file.read

    async def read(self, req: Request) -> Any:
        t0 = time.monotonic()
        cid = _cid(req.input)
        manifest = await asyncio.to_thread(self._held_manifest, cid)
        if manifest is not None:
            wanted = _indexes(req.input.get("chunks"), len(manifest.chunks))
            if req.stream:
                return self._read_frames(manifest, wanted, t0, with_chunks=not req.input.get("chunks"))
            return {"output": await self._read_unary(manifest, req.input.get("chunks"), wanted),
                    "meta": {"ms": _ms(t0)}}
        if await asyncio.to_thread(self.store.has_chunk, cid):
            data = await asyncio.to_thread(self.store.read_chunk, cid)
            return {"output": {"cid": cid, "size_bytes": len(data), "data_b64": b64encode(data)},
                    "meta": {"ms": _ms(t0)}}
        raise BlobError("not_found", f"{short(cid)} is not in this store")

    def _held_manifest(self, cid: str) -> BlobManifest | None:
        """The stored manifest (its LRU stamp refreshed), or None. A fetcher calls
        file.read once per batch of chunks, and parsing and re-hashing a 1 GB file's
        manifest (4 096 chunk CIDs) costs ~20 ms, so the last few verified ones are kept
        while their file is the same one (the store replaces a file, never edits it)."""
        path = self.store.manifest_path(cid)
        try:
            st = path.stat()
        except FileNotFoundError:
            with self._manifests_lock:
                self._manifests.pop(cid, None)
            return None
        key = (st.st_ino, st.st_size)
        with self._manifests_lock:  # file.read calls run in threads side by side
            held = self._manifests.get(cid)
            if held is not None and held[0] == key:
                self._manifests.move_to_end(cid)
        if held is not None and held[0] == key:
            with contextlib.suppress(OSError):
                os.utime(path)
            return held[1]
        try:
            manifest = self.store.read_manifest(cid)  # verified; refreshes its LRU stamp
        except BlobError as exc:
            if exc.code == "not_found":  # gone meanwhile, or corrupt (and removed)
                return None
            raise
        with self._manifests_lock:
            self._manifests[cid] = (key, manifest)
            while len(self._manifests) > MANIFEST_CACHE:
                self._manifests.popitem(last=False)
        return manifest

    async def _read_frames(self, manifest: BlobManifest, wanted: list[int], t0: float, *,
                           with_chunks: bool = True) -> Frames:
        """`manifest` first: in full when the whole file or only the manifest was asked
        for; without its chunk list for a batch of chunks (`chunks: [i...]`), since the
        fetcher has it already and it is ~90 bytes a chunk (350 kB for 1 GB) per batch."""
        wire = manifest.to_wire()
        if not with_chunks:
            del wire["chunks"]
        yield "manifest", wire
        async with self.gate.serving(manifest.size_bytes):
            for i in wanted:  # one chunk at a time: the stream's flow control paces the reads
                await self.gate.pace(manifest.size_bytes)  # offline: big files yield to small ones
                yield "chunk", await asyncio.to_thread(self._chunk_frame, manifest, i)
        yield "done", {"chunks": len(wanted), "ms": _ms(t0)}

    def _chunk_frame(self, manifest: BlobManifest, i: int) -> dict[str, Any]:
        data = self.store.read_chunk(manifest.chunks[i])  # verified; a lacking or bad one: not_found
        return {"i": i, "cid": manifest.chunks[i], "size_bytes": len(data), "data_b64": b64encode(data)}

    async def _read_unary(self, manifest: BlobManifest, asked: Any, wanted: list[int]) -> dict[str, Any]:
        """Without a stream: the manifest, and the chunks only when a few were asked for."""
        if asked is None:
            return {"manifest": manifest.to_wire()}
        if len(wanted) > UNARY_READ_MAX:
            raise bad(f"read more than {UNARY_READ_MAX} chunks as a stream")
        chunks = [await asyncio.to_thread(self._chunk_frame, manifest, i) for i in wanted]
        return {"manifest": manifest.to_wire(), "chunks": chunks}

    # ------------------------------------------------------------------ file.list / file.advertise

    async def list(self, req: Request) -> dict[str, Any]:
        prefix = _hex_prefix(req.input.get("prefix"))
        await self.ready()
        entries = self.complete.matching(prefix)
        present = await asyncio.to_thread(lambda: [self.store.has_manifest(e["cid"]) for e in entries])
        gone = [e["cid"] for e, ok in zip(entries, present) if not ok]  # evicted to make room since
        if gone:
            self._forget(gone)
        kept = [e for e, ok in zip(entries, present) if ok][:LIST_MAX]
        return {"output": {"cids": [e["cid"] for e in kept], "entries": [dict(e) for e in kept]}, "meta": {}}

    async def advertise(self, req: Request) -> dict[str, Any]:
        raw = req.input.get("cids")
        if not isinstance(raw, list) or len(raw) > ADVERTISE_MAX:
            raise bad(f"input.cids must be a list of at most {ADVERTISE_MAX} CIDs")
        cids = [check_cid(c, f"input.cids[{k}]") for k, c in enumerate(raw)]
        if not req.caller or req.caller == self.node_id:
            return {"output": {"recorded": 0}, "meta": {}}  # we know what we hold
        return {"output": {"recorded": self.holders.record(req.caller, dict.fromkeys(cids))}, "meta": {}}

    # ------------------------------------------------------------------ file.put

    async def put(self, req: Request) -> dict[str, Any]:
        inp = req.input
        if "manifest" in inp:
            out = await self._put_manifest(inp["manifest"])
        elif "manifest_cid" in inp:
            out = await self._put_chunks(_cid(inp, "manifest_cid"), inp.get("chunks"))
        else:
            raise bad("input needs manifest (step 1) or manifest_cid and chunks (step 2)")
        return {"output": out, "meta": {}}

    async def _put_manifest(self, doc: Any) -> dict[str, Any]:
        manifest = BlobManifest.from_wire(doc)  # the CID recomputed: a mismatch is bad_request

        def step() -> list[int]:
            if self.store.has_manifest(manifest.cid):
                self.store.write_manifest(manifest)  # refreshes its stamp, takes names it lacked
                needed = self.store.missing(manifest)
                self.store.ensure_room(sum(manifest.chunk_size(i) for i in needed))
                return needed
            needed = self.store.missing(manifest)
            # room for the whole blob (and its manifest) before anything of it is stored
            self.store.ensure_room(sum(manifest.chunk_size(i) for i in needed) + _manifest_bytes(manifest))
            self.store.write_manifest(manifest)
            return needed

        needed = await asyncio.to_thread(step)
        if needed:
            self._refresh_note()
        else:
            await self._blob_complete(manifest)
        return {"manifest_cid": manifest.cid, "needed": needed}

    async def _put_chunks(self, manifest_cid: str, raw: Any) -> dict[str, Any]:
        if not isinstance(raw, list) or not 0 < len(raw) <= PUT_BATCH:
            raise bad(f"input.chunks must be a list of 1..{PUT_BATCH} chunks")
        try:
            manifest = await asyncio.to_thread(self.store.read_manifest, manifest_cid)
        except BlobError as exc:
            if exc.code == "not_found":
                raise BlobError("not_found", f"no upload of {short(manifest_cid)} here; send its "
                                             "manifest first (step 1)") from None
            raise
        chunks = [self._put_chunk(manifest, k, c) for k, c in enumerate(raw)]

        def write() -> list[int]:
            for i, cid, data in chunks:
                try:
                    self.store.write_chunk(cid, data)  # verified before it is stored
                except BlobError as exc:
                    if exc.code == "bad_request":
                        raise bad(f"chunk {i} does not hash to its CID in the manifest") from None
                    raise
            return self.store.missing(manifest)

        needed = await asyncio.to_thread(write)
        if not needed:
            await self._blob_complete(manifest)
        return {"manifest_cid": manifest.cid, "received": len(chunks), "needed": needed}

    @staticmethod
    def _put_chunk(manifest: BlobManifest, k: int, c: Any) -> tuple[int, str, bytes]:
        where = f"input.chunks[{k}]"
        if not isinstance(c, dict):
            raise bad(f"{where} must be an object {{i, cid, data_b64}}")
        i = _index(c.get("i"), len(manifest.chunks), f"{where}.i")
        if c.get("cid") != manifest.chunks[i]:
            raise bad(f"{where}.cid is not chunk {i} of the manifest")
        data = b64decode(c.get("data_b64"), f"{where}.data_b64")
        if len(data) != manifest.chunk_size(i):
            raise bad(f"{where} holds {len(data)} bytes; chunk {i} has {manifest.chunk_size(i)}")
        return i, manifest.chunks[i], data

    # ------------------------------------------------------------------ file.add

    async def add(self, req: Request) -> Any:
        inp = req.input
        path = _abs_path(inp.get("path"), "path")
        pin, mime = _flag(inp.get("pin"), "pin"), _mime(inp.get("mime_type"))
        return await self._answer(req, self._add_frames(path, pin, mime))

    async def _add_frames(self, path: Path, pin: bool, mime: str | None) -> Frames:
        size = await asyncio.to_thread(_file_size, path)
        await self.ready()
        ticker = Ticker()
        task = asyncio.ensure_future(asyncio.to_thread(
            lambda: self.store.add_file(path, mime_type=mime, progress=ticker.from_thread)))
        try:
            async for frame in ticker.frames(task, lambda n: {"current": n, "total": size, "stage": "hashing"}):
                yield frame
        finally:
            ticker.stop(task)  # the caller left: the thread stops at its next chunk and cleans up
        manifest = task.result()
        added = manifest.cid not in self.complete
        if pin:
            await asyncio.to_thread(self.store.pin, manifest.cid)
        await self._blob_complete(manifest)
        log.info("file added", extra={"cid": manifest.cid, "size_bytes": manifest.size_bytes, "added": added})
        yield "done", {"manifest": manifest.to_wire(), "pinned": self.store.is_pinned(manifest.cid),
                       "added": added}

    # ------------------------------------------------------------------ file.get

    async def get(self, req: Request) -> Any:
        inp = req.input
        cid = _cid(inp)
        out = _abs_path(inp["out"], "out") if inp.get("out") is not None else None
        return await self._answer(req, self._get_frames(cid, out, _node_ids(inp.get("sources"))))

    async def _get_frames(self, cid: str, out: Path | None, sources: list[str]) -> Frames:
        t0 = time.monotonic()
        from_nodes: dict[str, int] = {}
        # How the fetch went, for `file get --json`: chunks found in the store (a resumed
        # fetch), sources dropped for repeated failures, and each failing source's strikes.
        report: dict[str, Any] = {"resumed_chunks": 0, "dropped": [], "failures": {}}
        if not await asyncio.to_thread(self.store.has_blob, cid):
            fetch: dict[str, Any] = {}
            async for frame in self._fetch_frames(cid, sources, fetch):
                yield frame
            result = fetch["result"]
            from_nodes = dict(result.from_nodes)
            report = {"resumed_chunks": result.resumed_chunks, "dropped": list(result.dropped),
                      "failures": dict(result.failures)}
            for node, served in from_nodes.items():
                if served:  # it served verified chunks: it holds the file
                    self.holders.record(node, [cid])
            await self._blob_complete(fetch["result"].manifest)
        manifest = await asyncio.to_thread(self.store.read_manifest, cid)
        target = None
        if out is not None:
            target = await asyncio.to_thread(_out_file, out, manifest)
            async for frame in self._export_frames(manifest, target):
                yield frame
        yield "done", {"manifest": manifest.to_wire(), "out": str(target) if target else None,
                       "from": from_nodes, **report, "ms": _ms(t0)}

    async def _fetch_frames(self, cid: str, sources: list[str], into: dict[str, Any]) -> Frames:
        """Fetch `cid` from its holders (hearthnet.blobs.transfer); the result lands in `into`."""
        from hearthnet.blobs.transfer import BusSource, TransferManager, find_holders

        holders = sources or await find_holders(self.bus, cid, self_id=self.node_id,
                                                known=self.holders.holders(cid))
        holders = [h for h in holders if h != self.node_id]
        if not holders:
            raise BlobError("not_found", f"{short(cid)} is not here and no known node holds it")
        ticker = Ticker()
        if self._manager is None:
            self._manager = TransferManager(self.store, gate=self.gate)  # downloads yield too
        task = asyncio.ensure_future(self._manager.fetch(cid, [BusSource(self.bus, n, self.node_id) for n in holders],
                                                   progress=ticker.on_loop))

        def frame(p: Any) -> dict[str, Any]:
            return {"current": p.done_bytes, "total": p.total_bytes, "stage": "fetching",
                    "sources": p.sources_active, "rate_bytes_s": round(p.rate_bytes_s, 1)}

        try:
            async for f in ticker.frames(task, frame):
                yield f
        finally:
            ticker.stop(task)
        into["result"] = task.result()
        log.info("blob fetched", extra={"cid": cid, "from": into["result"].from_nodes})

    async def _export_frames(self, manifest: BlobManifest, target: Path) -> Frames:
        ticker = Ticker()
        task = asyncio.ensure_future(asyncio.to_thread(
            lambda: self.store.export(manifest.cid, target, progress=ticker.from_thread)))
        try:
            async for f in ticker.frames(task, lambda n: {"current": n, "total": manifest.size_bytes,
                                                          "stage": "exporting"}):
                yield f
        finally:
            ticker.stop(task)
        task.result()

    # ------------------------------------------------------------------ file.import (bundles)

    async def import_blob(self, req: Request) -> Any:
        inp = req.input
        manifest = BlobManifest.from_wire(inp.get("manifest"))
        parts = inp.get("parts")
        if not isinstance(parts, list) or not parts or len(parts) > 4096:
            raise bad("input.parts must be a list of absolute paths (the blob's bytes, in order)")
        paths = [_abs_path(p, f"parts[{k}]") for k, p in enumerate(parts)]
        return await self._answer(req, self._import_frames(manifest, paths))

    async def _import_frames(self, manifest: BlobManifest, paths: list[Path]) -> Frames:
        await self.ready()
        if await asyncio.to_thread(self.store.has_blob, manifest.cid):
            await self._blob_complete(manifest)
            yield "done", {"cid": manifest.cid, "added": False}
            return
        sizes = await asyncio.to_thread(lambda: [_file_size(p) for p in paths])
        if sum(sizes) != manifest.size_bytes:
            raise bad(f"the parts hold {sum(sizes)} bytes; the manifest says {manifest.size_bytes}")
        total = manifest.size_bytes
        for stage, work in (("verifying", self._verify_parts), ("writing", self._write_parts)):
            ticker = Ticker()
            task = asyncio.ensure_future(asyncio.to_thread(work, manifest, paths, ticker.from_thread))
            try:
                async for f in ticker.frames(task, lambda n, s=stage: {"current": n, "total": total, "stage": s}):
                    yield f
            finally:
                ticker.stop(task)
            task.result()
        await self._blob_complete(manifest)
        yield "done", {"cid": manifest.cid, "added": True}

    def _verify_parts(self, manifest: BlobManifest, paths: list[Path], progress: Callable[[int], None]) -> None:
        """Every chunk checked against the manifest before anything is written."""
        done = 0
        for i, data in enumerate(_chunks_of(paths)):
            if i >= len(manifest.chunks) or len(data) != manifest.chunk_size(i):
                raise bad(f"the parts do not split into the manifest's chunks (at chunk {i})")
            if hash_bytes(data) != manifest.chunks[i]:
                raise bad(f"chunk {i} of the parts does not hash to its CID in the manifest")
            done += len(data)
            progress(done)

    def _write_parts(self, manifest: BlobManifest, paths: list[Path], progress: Callable[[int], None]) -> None:
        self.store.ensure_room(sum(manifest.chunk_size(i) for i in self.store.missing(manifest)))
        done = 0
        for i, data in enumerate(_chunks_of(paths)):
            self.store.write_chunk(manifest.chunks[i], data)  # verified again as it is written
            done += len(data)
            progress(done)
        self.store.write_manifest(manifest)  # last: an interrupted import leaves no half blob listed

    # ------------------------------------------------------------------ the owner's listing and upkeep

    async def ls(self, req: Request) -> dict[str, Any]:
        await self.ready()
        blobs = await asyncio.to_thread(self.store.blobs)
        logged = await self._logged_holders()
        files = []
        for b in blobs:
            holders = dict.fromkeys(self.holders.holders(b["cid"]) + sorted(logged.get(b["cid"], ())))
            holders.pop(self.node_id, None)
            files.append({"cid": b["cid"], "filename": b["filename"], "size_bytes": b["size_bytes"],
                          "pinned": b["pinned"], "complete": b["complete"], "chunks_missing": b["chunks_missing"],
                          "holders": list(holders), "last_used": _stamp(b["last_used"])})
            if b["complete"] and b["cid"] not in self.complete:
                self.complete.add(b["cid"], b["size_bytes"], b["filename"])
        self._count = (time.monotonic(), len(blobs))
        return {"output": {"files": files, "usage": await self._usage()}, "meta": {}}

    async def _logged_holders(self) -> dict[str, set[str]]:
        """cid -> nodes that advertised it in the community log (best effort)."""
        try:
            events = (await self._ledger("community.log.events",
                                         {"event_types": ["file.cid.advertised"]})).get("events") or []
        except HearthNetError as exc:
            log.warning("could not read advertisements from the ledger", extra={"code": exc.code})
            return {}
        out: dict[str, set[str]] = {}
        for ev in events:
            cid = (ev.get("data") or {}).get("cid") if isinstance(ev, dict) else None
            if isinstance(cid, str) and isinstance(ev.get("author"), str):
                out.setdefault(cid, set()).add(ev["author"])
        return out

    async def _usage(self) -> dict[str, Any]:
        u = await asyncio.to_thread(self.store.usage)
        return {"capacity_bytes": u.capacity_bytes, "used_bytes": u.used_bytes, "free_bytes": u.free_bytes,
                "store_bytes": u.store_bytes, "fraction": round(u.fraction, 4),
                "min_free_bytes": self.store.min_free_bytes}

    async def pin(self, req: Request) -> dict[str, Any]:
        cid = _cid(req.input)
        if not await asyncio.to_thread(self.store.has_manifest, cid):
            raise BlobError("not_found", f"{short(cid)} is not in this store")
        await asyncio.to_thread(self.store.pin, cid)
        return {"output": {"cid": cid, "pinned": True}, "meta": {}}

    async def unpin(self, req: Request) -> dict[str, Any]:
        cid = _cid(req.input)
        was = await asyncio.to_thread(self.store.unpin, cid)
        if not was and not await asyncio.to_thread(self.store.has_manifest, cid):
            raise BlobError("not_found", f"{short(cid)} is not in this store")
        if was:
            await self._event("file.cid.unpinned", {"cid": cid})
        return {"output": {"cid": cid, "pinned": False}, "meta": {}}

    async def gc(self, req: Request) -> dict[str, Any]:
        await self.ready()
        result = await asyncio.to_thread(self.store.gc)
        evicted = list(result.evicted or [])
        self._forget(evicted)
        log.info("gc", extra={"freed_bytes": result.freed_bytes, "evicted": len(evicted)})
        return {"output": {"freed_bytes": result.freed_bytes, "evicted": evicted}, "meta": {}}

    async def status(self, req: Request) -> dict[str, Any]:
        await self.ready()
        when, count = self._count
        if time.monotonic() - when > COUNT_TTL_SECONDS:
            count = await asyncio.to_thread(lambda: sum(1 for _ in self.store.manifests()))
            self._count = (time.monotonic(), count)
        u = await asyncio.to_thread(self.store.usage)
        return {"output": {"blobs": count, "complete": len(self.complete), "pinned": len(self.store.pinned()),
                           "store_bytes": u.store_bytes, "capacity_bytes": u.capacity_bytes,
                           "free_bytes": u.free_bytes, "fraction": round(u.fraction, 4),
                           "transfers": self.gate.status()}, "meta": {}}

    async def verify(self, req: Request) -> dict[str, Any]:
        sample = req.input.get("sample", VERIFY_DEFAULT)
        if type(sample) is not int or not 0 < sample <= VERIFY_MAX:
            raise bad(f"input.sample must be 1..{VERIFY_MAX}")
        await self.ready()
        checked, corrupt, hit = await asyncio.to_thread(self._verify_sample, sample)
        if corrupt:
            log.warning("corrupt chunks found and removed", extra={"chunks": corrupt})
            self._forget(hit)
        return {"output": {"checked": checked, "bad": len(corrupt), "corrupt": corrupt}, "meta": {}}

    def _verify_sample(self, sample: int) -> tuple[int, list[str], list[str]]:
        """Re-hash up to `sample` random stored chunks, spread over the blobs. A corrupt
        chunk is removed by the store (and its blobs are then incomplete)."""
        rng = random.SystemRandom()
        cids = [c for c, _ in self.store.manifests()]
        rng.shuffle(cids)
        per_blob = -(-sample // max(len(cids), 1))
        checked, corrupt, hit = 0, [], []
        for mcid in cids:
            try:
                manifest = self.store.read_manifest(mcid, touch=False)
            except BlobError:
                continue
            for i in rng.sample(range(len(manifest.chunks)), min(per_blob, len(manifest.chunks))):
                if checked >= sample:
                    return checked, corrupt, hit
                chunk = manifest.chunks[i]
                if not self.store.has_chunk(chunk):
                    continue  # not fetched yet: nothing to verify
                checked += 1
                try:
                    self.store.read_chunk(chunk)
                except BlobError:
                    corrupt.append(chunk)
                    hit.append(mcid)
        return checked, corrupt, hit


# --------------------------------------------------------------------------- small helpers


def _stamp(mtime: float | None) -> str | None:
    return rfc3339(datetime.fromtimestamp(mtime, timezone.utc)) if mtime is not None else None


def _manifest_bytes(manifest: BlobManifest) -> int:
    """About what the manifest takes on disk (its wire form, ~90 bytes a chunk)."""
    return 512 + 90 * len(manifest.chunks)


def _out_file(out: Path, manifest: BlobManifest) -> Path:
    """`--out DIR` writes the file's own name inside it (or its short CID). That name
    comes from whoever made the manifest, so it never replaces a file already there:
    `name (1).ext`, `name (2).ext`, ... instead. A file path given is the owner's choice."""
    if not out.is_dir():
        return out
    name = Path(manifest.filename or short(manifest.cid))
    target, n = out / name, 0
    while target.exists() or target.is_symlink():
        n += 1
        target = out / f"{name.stem} ({n}){name.suffix}"
    return target


def _chunks_of(paths: list[Path]) -> Any:
    """The parts' bytes, in order, cut into CHUNK_SIZE_BYTES pieces (constant memory)."""
    buf = bytearray()
    for path in paths:
        with path.open("rb") as fh:
            while True:
                data = fh.read(CHUNK_SIZE_BYTES - len(buf))
                if not data:
                    break
                buf += data
                if len(buf) == CHUNK_SIZE_BYTES:
                    yield bytes(buf)
                    buf.clear()
    if buf:
        yield bytes(buf)
