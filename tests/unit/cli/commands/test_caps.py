from __future__ import annotations

import json

import pytest

from hearthnet.cli.commands.caps import model_or_params, name_matches
from tests.unit.cli.conftest import capability, invoke


def _names(result) -> list[str]:
    return [c["name"] for c in json.loads(result.stdout)["capabilities"]]


def test_caps_lists_all(runner, gateway):
    gateway.caps[0]["p50_ms"] = 123.4
    result = invoke(runner, "caps")
    assert result.exit_code == 0, result.output
    for text in ("llm.chat", "embed.text", "qwen2.5-7b-instruct", "stable", "ed25519:AAAA-AAAA-AAAA-AAAA",
                 "(local)", "123", "0/4", "p50ms", "in_flight", "model/params"):
        assert text in result.stdout, text


def test_caps_filters(runner, gateway):
    gateway.caps.append(capability("llm.complete"))
    assert _names(invoke(runner, "caps", "--json", "--local-only")) == ["llm.chat", "llm.complete"]
    assert _names(invoke(runner, "caps", "--json", "--remote-only")) == ["embed.text"]
    assert _names(invoke(runner, "caps", "--json", "--name", "llm.c*")) == ["llm.chat", "llm.complete"]
    assert _names(invoke(runner, "caps", "--json", "--name", "llm")) == ["llm.chat", "llm.complete"]
    assert _names(invoke(runner, "caps", "--json", "--name", "*.text", "--local-only")) == []


def test_caps_local_and_remote_only_is_usage_error(runner, gateway):
    result = invoke(runner, "caps", "--local-only", "--remote-only")
    assert result.exit_code == 2


def test_caps_no_node_exits_3(runner):
    assert invoke(runner, "caps").exit_code == 3


@pytest.mark.parametrize(
    "name,pattern,expected",
    [("llm.chat", None, True), ("llm.chat", "llm", True), ("llmx.chat", "llm", False),
     ("llm.chat", "*.chat", True), ("llm.chat", "embed.*", False), ("llm.chat", "llm.chat", True)],
)
def test_name_matches(name, pattern, expected):
    assert name_matches(name, pattern) is expected


def test_model_or_params():
    assert model_or_params({}) == "-"
    assert model_or_params({"model": "m"}) == "m"
    assert model_or_params({"models": ["a", "b"]}) == "a, b"
    assert model_or_params({"dim": 384, "lang": "en"}) == "dim=384, lang=en"
