"""Hostile data for the fuzz tests: anything JSON or msgpack can carry, mistyped values,
deep nesting and long lists."""
from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

scalars = (st.none() | st.booleans() | st.integers(min_value=-2**63, max_value=2**64 - 1)
           | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=40)
           | st.sampled_from(["", "1.0", "lots", "0001-01-01T00:00:00+01:00", "ed25519:x", "blake3:00",
                              "experimental.echo", "llm.chat", "01J00000000000000000000000"]))
json_scalars = (st.none() | st.booleans() | st.integers(min_value=-2**70, max_value=2**70)
                | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=40))


def values(leaf: st.SearchStrategy = scalars, max_leaves: int = 30) -> st.SearchStrategy:
    return st.recursive(leaf, lambda inner: st.lists(inner, max_size=6)
                        | st.dictionaries(st.text(max_size=12), inner, max_size=6), max_leaves=max_leaves)


json_values = values(json_scalars)
msgpack_values = values(scalars | st.binary(max_size=20))


def nest(depth: int, kind: str = "list", leaf: Any = 1) -> Any:
    value = leaf
    for _ in range(depth):
        value = [value] if kind == "list" else {"k": value}
    return value


deep = st.builds(nest, st.integers(min_value=1, max_value=3000), st.sampled_from(["list", "dict"]))
long_lists = st.builds(lambda n, v: [v] * n, st.integers(min_value=0, max_value=20_000), scalars)
hostile = json_values | deep | long_lists


def mutate(draw: Any, doc: dict[str, Any], paths: list[tuple[Any, ...]]) -> dict[str, Any]:
    """`doc` with the value at one of `paths` replaced by hostile data, or deleted."""
    import copy

    doc = copy.deepcopy(doc)
    path = draw(st.sampled_from(paths))
    parent: Any = doc
    for key in path[:-1]:
        parent = parent[key]
    if draw(st.booleans()) and isinstance(parent, dict):
        parent.pop(path[-1], None)
    else:
        parent[path[-1]] = draw(hostile | msgpack_values)
    return doc
