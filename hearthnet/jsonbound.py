"""JSON from untrusted bytes with a nesting bound.

`json.loads` recurses in C and raises RecursionError on very deep input, and what does
parse may still be too deep for the recursive code that handles it later (canonical
JSON, schema checks, msgpack): a 980-deep body used to surface as a 500. `loads` gives
every caller one error, ValueError, for bad UTF-8, bad JSON and nesting deeper than
`max_depth`.

Cost: a body with no more opening brackets than `max_depth` cannot nest deeper, which
two C-speed counts prove for almost every request; otherwise the parsed value's
containers are walked once, iteratively (scalars are never visited).
"""
from __future__ import annotations

import json
from typing import Any

MAX_DEPTH = 64


def depth_exceeds(value: Any, max_depth: int) -> bool:
    """True if `value` nests containers deeper than max_depth (a scalar is depth 0)."""
    stack = [(value, 1)] if isinstance(value, (dict, list)) else []
    while stack:
        node, level = stack.pop()
        if level > max_depth:
            return True
        children = node.values() if isinstance(node, dict) else node
        stack.extend((c, level + 1) for c in children if isinstance(c, (dict, list)))
    return False


def loads(raw: bytes | bytearray | str, max_depth: int = MAX_DEPTH) -> Any:
    """Parse JSON; ValueError if it is not UTF-8 JSON or nests deeper than max_depth."""
    if isinstance(raw, str):
        data: bytes | bytearray = raw.encode("utf-8", "surrogatepass")
    else:  # a bytearray is parsed where it is (a request body is not copied once more)
        data = raw if isinstance(raw, (bytes, bytearray)) else bytes(raw)
    try:
        value = json.loads(data)
    except RecursionError:
        raise ValueError(f"JSON nested deeper than {max_depth} levels") from None
    except UnicodeDecodeError as exc:
        raise ValueError(f"not UTF-8: {exc}") from None
    except json.JSONDecodeError as exc:
        raise ValueError(str(exc)) from None
    if data.count(b"[") + data.count(b"{") > max_depth and depth_exceeds(value, max_depth):
        raise ValueError(f"JSON nested deeper than {max_depth} levels")
    return value
