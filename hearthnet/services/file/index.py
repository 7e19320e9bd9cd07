"""The file worker's in-memory indexes: who holds what (from peers' `file.advertise`
calls) and which blobs this store holds complete (what `file.list` answers).

Both are bounded: the holder index is filled by peers, so it keeps at most MAX_CIDS CIDs
(least recently advertised dropped first) and MAX_HOLDERS holders per CID.
"""
from __future__ import annotations

import time
from collections import OrderedDict
from typing import Any, Callable, Iterable

MAX_CIDS = 100_000
MAX_HOLDERS = 64


class HolderIndex:
    """cid -> {node_id: when last advertised}; newest holders first."""

    def __init__(self, *, max_cids: int = MAX_CIDS, max_holders: int = MAX_HOLDERS,
                 clock: Callable[[], float] = time.time) -> None:
        self._by_cid: OrderedDict[str, dict[str, float]] = OrderedDict()
        self.max_cids, self.max_holders, self.clock = max_cids, max_holders, clock

    def record(self, node_id: str, cids: Iterable[str]) -> int:
        now, n = self.clock(), 0
        for cid in cids:
            holders = self._by_cid.pop(cid, None) or {}
            holders.pop(node_id, None)
            holders[node_id] = now
            while len(holders) > self.max_holders:  # the one advertised longest ago goes
                holders.pop(next(iter(holders)))
            self._by_cid[cid] = holders
            n += 1
        while len(self._by_cid) > self.max_cids:
            self._by_cid.popitem(last=False)
        return n

    def holders(self, cid: str) -> list[str]:
        held = self._by_cid.get(cid) or {}
        return sorted(held, key=lambda node: held[node], reverse=True)

    def __len__(self) -> int:
        return len(self._by_cid)


class CompleteIndex:
    """Manifest CIDs this store holds complete, with their `file.list` entry
    ({cid, size_bytes, filename}). Kept up to date by the worker's own writes; an entry
    whose manifest has gone since (evicted to make room) is dropped when it is listed."""

    def __init__(self) -> None:
        self._entries: dict[str, dict[str, Any]] = {}

    def reset(self, entries: Iterable[dict[str, Any]]) -> None:
        self._entries = {e["cid"]: e for e in entries}

    def add(self, cid: str, size_bytes: int, filename: str | None) -> None:
        self._entries[cid] = {"cid": cid, "size_bytes": size_bytes, "filename": filename}

    def discard(self, cid: str) -> None:
        self._entries.pop(cid, None)

    def __contains__(self, cid: object) -> bool:
        return cid in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def matching(self, hex_prefix: str) -> list[dict[str, Any]]:
        """Entries whose CID's hex digits start with `hex_prefix`, in CID order."""
        return [self._entries[c] for c in sorted(self._entries) if c[len("blake3:"):].startswith(hex_prefix)]
