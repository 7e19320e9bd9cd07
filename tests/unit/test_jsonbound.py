from __future__ import annotations

import json

import pytest

from hearthnet import jsonbound


def test_ordinary_json_parses():
    assert jsonbound.loads(b'{"a": [1, {"b": "[[[["}]}') == {"a": [1, {"b": "[[[["}]}
    assert jsonbound.loads('"x"') == "x"


@pytest.mark.parametrize("depth", [65, 980, 100_000])
def test_too_deep_is_value_error(depth):
    with pytest.raises(ValueError, match="deeper"):
        jsonbound.loads(b"[" * depth + b"]" * depth)
    with pytest.raises(ValueError):
        jsonbound.loads(b'{"a":' * depth + b"1" + b"}" * depth)


def test_exactly_the_bound_is_fine():
    assert jsonbound.loads(b"[" * 64 + b"]" * 64, max_depth=64) is not None


def test_brackets_inside_strings_do_not_count():
    raw = json.dumps({"text": "[" * 500}).encode()
    assert jsonbound.loads(raw)["text"] == "[" * 500


@pytest.mark.parametrize("raw", [b"", b"{", b"\xff\xfe\x00", b"[1,]", b"NaN-ish"])
def test_bad_input_is_value_error(raw):
    with pytest.raises(ValueError):
        jsonbound.loads(raw)
