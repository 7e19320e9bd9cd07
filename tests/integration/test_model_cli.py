"""`hearthnet model` on a real node: add restarts only the llm worker and llm.chat then
answers from the new model; rm takes it away; pull downloads from a local server
(interrupted midway, resumed) and adds the file. Never the internet."""
from __future__ import annotations

import hashlib
import json

import pytest

from hearthnet.testing.model_servers import FileServer

pytestmark = pytest.mark.integration

CHAT = {"params": {"model": "tiny"}, "input": {"messages": [{"role": "user", "content": "hello"}],
                                               "max_tokens": 4, "seed": 1, "stream": False}}


def pids(node) -> dict[str, int]:
    status = node.api("/api/v1/status")
    return {w["name"]: w["pid"] for w in status["workers"] if w["pid"]}


@pytest.fixture
def node(make_node):
    n = make_node("model")
    n.init()
    n.start(wait_workers=("broker", "gateway", "ledger", "llm"))
    return n


def test_add_restarts_only_llm_then_chat_answers_and_rm_removes(node, tiny_gguf):
    before = pids(node)
    assert "llm_00" in before and len(before) >= 5
    note = "# the owner's own note: the model lives on the USB stick\n"
    node.config_file.write_text(node.config_file.read_text() + note)
    doc = node.cli_json("model", "add", str(tiny_gguf), "--name", "tiny")
    assert node.config_file.read_text().endswith(note)  # config.toml edited in place
    assert doc["node_running"] is True and doc["restarted"] == ["llm_00"]
    assert doc["loaded"] is True and "tiny" in doc["serving"]
    assert doc["load_check"]["status"] == "ok"
    node.wait_healthy(("broker", "gateway", "llm"))
    after = pids(node)
    assert after["llm_00"] != before["llm_00"]
    others = {k: v for k, v in before.items() if k != "llm_00"}
    assert {k: after.get(k) for k in others} == others  # every other worker kept its pid
    status, reply = node.call("llm.chat", CHAT)
    assert status == 200, reply
    assert reply["output"]["message"]["role"] == "assistant" and reply["meta"]["model"] == "tiny"
    ls = node.cli_json("model", "ls", "--no-detect")
    assert ls["node_running"] is True and ls["serving"] == ["tiny"]
    assert ls["configured"] == [{"name": "tiny", "backend": "llama_cpp", "where": str(tiny_gguf),
                                 "serving": True}]
    # bad input on the running node: refused, config and workers untouched
    config_before = node.config_file.read_bytes()
    bad = node.cli("model", "add", str(node.config_file))
    assert bad.returncode == 2 and "is not a GGUF" in bad.stderr
    assert node.config_file.read_bytes() == config_before and pids(node) == after
    rm = node.cli_json("model", "rm", "tiny")
    assert rm["restarted"] == ["llm_00"] and rm["loaded"] is False and "tiny" not in rm["serving"]
    assert node.config_file.read_text().endswith(note)
    assert tiny_gguf.exists()
    caps = node.api("/api/v1/capabilities")["capabilities"]
    assert not [c for c in caps if c["name"] == "llm.chat"]
    status, reply = node.call("llm.chat", CHAT)  # refused at once, not held until the deadline
    assert status == 404 and reply["error"] == "not_found", reply
    assert {k: v for k, v in pids(node).items() if k != "llm_00"} == others


def test_pull_resumes_an_interrupted_download_and_serves_it(node, tiny_gguf, tmp_path):
    data = tiny_gguf.read_bytes()
    sha = hashlib.sha256(data).hexdigest()
    cat = tmp_path / "catalogue.json"
    cat.write_text(json.dumps({"models": [{"name": "tiny", "url": "https://example.invalid/t.gguf",
                                           "file": "tiny-pulled.gguf", "sha256": sha, "license": "MIT"}]}))
    with FileServer({"tiny-pulled.gguf": data}, drop_after=len(data) // 2, drops=1) as srv:
        node.env.update({"HEARTHNET_MODELS_CATALOGUE_FILE": str(cat),
                         "HEARTHNET_MODELS_CATALOGUE_URL_BASE": srv.url})
        doc = node.cli_json("model", "pull", "tiny")
        ranges = [r["range"] for r in srv.requests]
    assert ranges == [None, f"bytes={len(data) // 2}-"]
    assert doc["download"]["sha256"] == sha and doc["download"]["attempts"] == 2
    pulled = node.root / "data" / "hearthnet" / "models" / "tiny-pulled.gguf"
    assert pulled.read_bytes() == data and doc["entry"]["model_path"] == str(pulled)
    assert doc["loaded"] is True and doc["restarted"] == ["llm_00"]
    status, reply = node.call("llm.chat", CHAT)
    assert status == 200, reply
