"""Ranged digests of the event log (issue 11, README "Sync"): a sync round between two
logs that differ in k of N events bisects lamport ranges whose digests differ, and lists
ids only for the small ranges left, so it costs O(k log N) digest entries, not N ids.

A range is inclusive, [lamport_lo, lamport_hi]. Its digest is (count, hash), the hash a
blake3 over its event ids in replay order (lamport, event_id), so two logs holding the same
events in a range give the same digest whatever order they stored them in. The store reads
it from the covering index `events_by_lamport` (community_id, lamport, event_id).

The request checks here are the one definition of what a caller may ask (the ledger
worker's capabilities and the peer route `/sync/v1/digest` both use them): a bounded
number of ranges, ascending and disjoint, so one request reads each stored event at most
once.
"""
from __future__ import annotations

from typing import Any, Iterable

from hearthnet.errors import HearthNetError

MAX_DIGEST_RANGES = 64  # ranges in one request
MAX_LAMPORT = 2**63 - 1  # SQLite INTEGER
HASH_HEX = 32  # 128 bits of blake3 per range: collisions are not a practical concern
RANGE_KEYS = frozenset({"lamport_lo", "lamport_hi"})

Range = tuple[int, int]


def range_hash(ids: Iterable[str]) -> str:
    """The hash of one range: its event ids, given in replay order."""
    import blake3

    h = blake3.blake3()
    for event_id in ids:
        h.update(event_id.encode() + b"\n")
    return h.hexdigest()[:HASH_HEX]


def parse_ranges(value: Any, what: str = "ranges") -> list[Range]:
    """`[{lamport_lo, lamport_hi}, ...]` → [(lo, hi)]: 1..MAX_DIGEST_RANGES ranges, each
    0 <= lo <= hi <= MAX_LAMPORT, ascending and disjoint; anything else is bad_request."""
    if not isinstance(value, list) or not value:
        raise HearthNetError("bad_request", f"{what} must be a non-empty list of lamport ranges")
    if len(value) > MAX_DIGEST_RANGES:
        raise HearthNetError("bad_request", f"{what} holds {len(value)} ranges, more than {MAX_DIGEST_RANGES}")
    out: list[Range] = []
    for r in value:
        if not isinstance(r, dict) or set(r) != RANGE_KEYS:
            raise HearthNetError("bad_request", f"each of {what} must be exactly {{lamport_lo, lamport_hi}}")
        lo, hi = r["lamport_lo"], r["lamport_hi"]
        if not all(type(v) is int and 0 <= v <= MAX_LAMPORT for v in (lo, hi)) or lo > hi:
            raise HearthNetError("bad_request", f"{what}: lamport bounds must be integers with "
                                                f"0 <= lamport_lo <= lamport_hi <= {MAX_LAMPORT}")
        if out and lo <= out[-1][1]:
            raise HearthNetError("bad_request", f"{what} must be ascending and must not overlap")
        out.append((lo, hi))
    return out


def wire_ranges(ranges: Iterable[Range]) -> list[dict[str, int]]:
    return [{"lamport_lo": lo, "lamport_hi": hi} for lo, hi in ranges]


def split(lo: int, hi: int, parts: int) -> list[Range]:
    """[lo, hi] cut into at most `parts` ascending, disjoint, non-empty ranges."""
    step = -(-(hi - lo + 1) // parts)  # ceil
    return [(a, min(a + step - 1, hi)) for a in range(lo, hi + 1, step)]
