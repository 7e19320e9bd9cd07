"""ULIDs (26 chars, Crockford base32, time-sortable, monotonic within a process):
EventID and TraceID (spec core-identity-config §1)."""
from __future__ import annotations

import os
import threading
import time

_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
# Two digits (10 bits) per lookup: a trace id is made for every call, so this is hot.
_PAIRS = tuple(a + b for a in _ALPHABET for b in _ALPHABET)
_SHIFTS = tuple(range(120, -1, -10))  # 13 pairs = 26 digits = 130 bits, the top 2 zero
_lock = threading.Lock()
_last = (0, 0)


def new_ulid() -> str:
    global _last
    with _lock:
        ms = int(time.time() * 1000)
        last_ms, last_rand = _last
        if ms <= last_ms:  # same millisecond (or clock step back): keep sorting order
            ms, rand = last_ms, (last_rand + 1) & ((1 << 80) - 1)
        else:
            rand = int.from_bytes(os.urandom(10), "big")
        _last = (ms, rand)
    value = (ms << 80) | rand
    return "".join([_PAIRS[(value >> s) & 1023] for s in _SHIFTS])
