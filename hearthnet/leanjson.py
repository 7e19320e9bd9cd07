"""JSON for the CLI's fast path (hearthnet.fastcli) without the json package: `json`
imports `re`, and `re` imports `enum`, ~8 ms of a ~30 ms `hearthnet status --json`. The
work is done by the C parts json itself uses (_json's scanner and string encoder), so
`loads` gives exactly json.loads' values and `dumps` exactly hearthnet.cli.render.dumps'
text for a JSON document (pinned by tests/unit/test_leanjson.py). Anything else raises:
the fast path then leaves the command to the click CLI."""
from __future__ import annotations

import _json

_WHITESPACE = " \t\n\r"  # JSON's whitespace (json.decoder.WHITESPACE)
_INDENT = "  "


class _Context:
    """What _json.make_scanner reads from a json.JSONDecoder() with default arguments."""

    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    parse_constant = {"-Infinity": float("-inf"), "Infinity": float("inf"), "NaN": float("nan")}.__getitem__
    memo: dict[str, str] = {}


_scan = _json.make_scanner(_Context())
_string = _json.encode_basestring  # json.dumps(ensure_ascii=False)'s string encoder


def loads(text: str) -> object:
    """json.loads(text) for a str."""
    start = len(text) - len(text.lstrip(_WHITESPACE))
    try:
        value, end = _scan(text, start)
    except StopIteration as exc:
        raise ValueError(f"Expecting value: char {exc.value}") from None
    if text[end:].strip(_WHITESPACE):
        raise ValueError(f"Extra data: char {end}")
    return value


def dumps(value: object) -> str:
    """json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False) for a document of
    dicts with str keys, lists, str, int, float, bool and None; TypeError for anything else."""
    parts: list[str] = []
    _emit(value, parts, "\n")
    return "".join(parts)


def _emit(value: object, parts: list[str], newline: str) -> None:
    if isinstance(value, str):
        parts.append(_string(value))
    elif value is None:
        parts.append("null")
    elif value is True:
        parts.append("true")
    elif value is False:
        parts.append("false")
    elif isinstance(value, int):
        parts.append(int.__repr__(value))
    elif isinstance(value, float):
        parts.append(_float(value))
    elif isinstance(value, dict):
        _emit_object(value, parts, newline)
    elif isinstance(value, list):
        _emit_array(value, parts, newline)
    else:
        raise TypeError(f"not a JSON value: {type(value).__name__}")


def _emit_object(obj: dict[object, object], parts: list[str], newline: str) -> None:
    if not obj:
        parts.append("{}")
        return
    inner, sep = newline + _INDENT, "{"
    for key, item in sorted(obj.items()):
        if not isinstance(key, str):
            raise TypeError(f"not a JSON key: {type(key).__name__}")
        parts.append(f"{sep}{inner}{_string(key)}: ")
        _emit(item, parts, inner)
        sep = ","
    parts.append(newline + "}")


def _emit_array(items: list[object], parts: list[str], newline: str) -> None:
    if not items:
        parts.append("[]")
        return
    inner, sep = newline + _INDENT, "["
    for item in items:
        parts.append(sep + inner)
        _emit(item, parts, inner)
        sep = ","
    parts.append(newline + "]")


def _float(value: float) -> str:
    if value != value:
        return "NaN"
    if value == float("inf"):
        return "Infinity"
    if value == float("-inf"):
        return "-Infinity"
    return float.__repr__(value)
