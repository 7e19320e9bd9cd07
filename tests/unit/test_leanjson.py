"""hearthnet.leanjson gives exactly json.loads' values and hearthnet.cli.render.dumps' text."""
from __future__ import annotations

import json
import random

import pytest

from hearthnet import leanjson
from hearthnet.cli import render

SAMPLES = [
    {}, [], "", 0, -1, 2**70, 1.5, -0.0, 1e300, 3.141592653589793, True, False, None,
    {"b": [1, {"z": [], "a": {}}], "a": "Küche \u2028 \"q\" \\ \n\t\x00 😀", "ok": True},
    {"nested": [[[]], [{}], [1, [2, [3]]]], "": "empty key", "Z": None, "ä": 1.0},
]


def _random_doc(rng: random.Random, depth: int = 0) -> object:
    kind = rng.randrange(9 if depth < 4 else 6)
    if kind == 0:
        return rng.randrange(-10**12, 10**12)
    if kind == 1:
        return rng.uniform(-1e6, 1e6) * 10 ** rng.randrange(-20, 20)
    if kind == 2:
        return "".join(chr(rng.choice([rng.randrange(32, 127), rng.randrange(0, 0x2FFF), 0x1F600]))
                       for _ in range(rng.randrange(8)))
    if kind in (3, 4, 5):
        return [True, False, None][kind - 3]
    if kind in (6, 7):
        return {str(_random_doc(rng, 9)): _random_doc(rng, depth + 1) for _ in range(rng.randrange(5))}
    return [_random_doc(rng, depth + 1) for _ in range(rng.randrange(5))]


@pytest.mark.parametrize("doc", SAMPLES + [_random_doc(random.Random(seed)) for seed in range(300)])
def test_dumps_and_loads_match_the_json_module(doc: object) -> None:
    text = render.dumps(doc)
    assert leanjson.dumps(doc) == text
    assert leanjson.loads(text) == json.loads(text)
    compact = json.dumps(doc, ensure_ascii=True)
    assert leanjson.loads(f" \n{compact}\t\r ") == json.loads(compact)


def test_special_floats_are_written_as_json_writes_them() -> None:
    doc = {"n": [float("nan"), float("inf"), float("-inf")]}
    assert leanjson.dumps(doc) == render.dumps(doc)
    assert leanjson.loads('[NaN, Infinity, -Infinity]')[1] == float("inf")


@pytest.mark.parametrize("text", ["", "  ", "{", '{"a": 1} x', "[1,]", "{'a': 1}", '"\x01"', "01", "nul"])
def test_what_json_refuses_is_refused(text: str) -> None:
    with pytest.raises(ValueError):
        json.loads(text)
    with pytest.raises(ValueError):
        leanjson.loads(text)


@pytest.mark.parametrize("value", [{1: "int key"}, {"a": object()}, (1, 2), {"s": {1, 2}}, b"bytes"])
def test_anything_but_a_json_document_is_a_type_error(value: object) -> None:
    with pytest.raises(TypeError):
        leanjson.dumps(value)
