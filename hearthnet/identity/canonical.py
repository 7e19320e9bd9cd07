"""Canonical JSON (spec core-identity-config §3): the one byte form every signature and
hash is computed over. Sorted keys at every level, no whitespace, integral floats as
integers (1.0 -> 1), non-ASCII left unescaped, NaN/Infinity refused. Peer data nested
deeper than MAX_DEPTH is refused with ValueError (not RecursionError, which no caller
expects from a bad document)."""
from __future__ import annotations

import json
import math
from typing import Any

MAX_DEPTH = 256


def _normalise(obj: Any, depth: int = 0) -> Any:
    if isinstance(obj, bool) or obj is None or isinstance(obj, (str, int)):
        return obj
    if isinstance(obj, float):
        if math.isnan(obj) or math.isinf(obj):
            raise ValueError("canonical JSON cannot hold NaN or Infinity")
        return int(obj) if obj.is_integer() else obj
    if depth >= MAX_DEPTH and isinstance(obj, (dict, list, tuple)):
        raise ValueError(f"canonical JSON is limited to {MAX_DEPTH} levels of nesting")
    if isinstance(obj, dict):
        out = {}
        for k, v in obj.items():
            if not isinstance(k, str):
                raise TypeError(f"canonical JSON keys must be strings, got {type(k).__name__}")
            out[k] = _normalise(v, depth + 1)
        return out
    if isinstance(obj, (list, tuple)):
        return [_normalise(v, depth + 1) for v in obj]
    raise TypeError(f"cannot canonicalise {type(obj).__name__}")


def canonical_json(obj: Any) -> bytes:
    return json.dumps(
        _normalise(obj), sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")
