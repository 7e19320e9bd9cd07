"""`hearthnet model` without a running node: validation, config edits, detection, pull.
(The restart of the llm worker on a real node: tests/integration/test_model_cli.py.)"""
from __future__ import annotations

import hashlib
import json
import struct
import tomllib

import pytest

from hearthnet.testing.model_servers import FakeLlamaServer, FakeOllama, FileServer
from hearthnet.testing.tiny_gguf import write_tiny_llama_gguf
from tests.unit.cli.conftest import invoke, json_result

ADD_KEYS = {"name", "source", "entry", "config_path", "gguf", "load_check", "download",
            "node_running", "restarted", "serving", "loaded"}


@pytest.fixture
def node(runner, env, monkeypatch):
    # The emergency detector probes nothing outside: online (model pull's precondition).
    monkeypatch.setenv("HEARTHNET_EMERGENCY_PROBE_TARGETS", "")
    r = invoke(runner, "init", "--non-interactive", "--name", "kitchen")
    assert r.exit_code == 0, r.output
    # A hand-set key the edits must keep.
    text = env.config_file.read_text()
    assert "store_and_forward = true" in text
    env.config_file.write_text(text.replace("store_and_forward = true", "store_and_forward = false"))
    return env


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return write_tiny_llama_gguf(tmp_path_factory.mktemp("m") / "tiny.gguf")


def backends(env) -> list[dict]:
    return tomllib.loads(env.config_file.read_text())["llm"].get("backends", [])


def test_add_ls_rm_a_file(runner, node, tiny):
    r = invoke(runner, "model", "add", str(tiny), "--name", "tiny", "--json")
    assert r.exit_code == 0, r.output
    doc = json_result(r.stdout)
    assert set(doc) == ADD_KEYS
    assert doc["entry"] == {"name": "llama_cpp", "model": "tiny", "model_path": str(tiny)}
    assert doc["gguf"]["architecture"] == "llama" and doc["node_running"] is False
    assert doc["load_check"]["status"] in ("ok", "skipped")
    assert backends(node) == [doc["entry"]]
    cfg = tomllib.loads(node.config_file.read_text())
    assert cfg["chat"]["store_and_forward"] is False and cfg["node"]["display_name"] == "kitchen"
    # the same name again: refused, nothing written
    before = node.config_file.read_bytes()
    again = invoke(runner, "model", "add", str(tiny), "--name", "tiny")
    assert again.exit_code == 2 and "already configured" in again.stderr
    assert node.config_file.read_bytes() == before
    ls = json_result(invoke(runner, "model", "ls", "--json").stdout)
    assert ls == {"configured": [{"name": "tiny", "backend": "llama_cpp", "where": str(tiny),
                                  "serving": None}], "node_running": False, "serving": [], "detected": []}
    rm = invoke(runner, "model", "rm", "tiny", "--json")
    assert rm.exit_code == 0, rm.output
    assert set(json_result(rm.stdout)) == {"name", "entry", "config_path", "deleted_file", "node_running",
                                         "restarted", "serving", "loaded"}
    assert backends(node) == [] and tiny.exists()  # the file is kept
    assert invoke(runner, "model", "rm", "tiny").exit_code == 1


def test_rm_delete_file(runner, node, tmp_path, tiny):
    own = tmp_path / "own.gguf"
    own.write_bytes(tiny.read_bytes())
    assert invoke(runner, "model", "add", str(own)).exit_code == 0
    assert backends(node)[0]["model"] == "own"  # the stem by default
    r = invoke(runner, "model", "rm", "own", "--delete-file")
    assert r.exit_code == 0 and "Deleted" in r.stdout and not own.exists()


def _bad_files(tmp_path, tiny):
    data = tiny.read_bytes()
    text = tmp_path / "text.gguf"
    text.write_text("not a model\n")
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(data[: len(data) // 2])
    arch = tmp_path / "arch.gguf"
    arch.write_bytes(data.replace(struct.pack("<Q", 5) + b"llama", struct.pack("<Q", 5) + b"qqqqq", 1))
    return {"not a GGUF": (text, "is not a GGUF"), "truncated": (cut, "truncated"),
            "unknown architecture": (arch, "unknown model architecture")}


@pytest.mark.parametrize("case", ["not a GGUF", "truncated", "unknown architecture"])
def test_bad_input_exits_2_and_leaves_config_byte_identical(runner, node, tmp_path, tiny, case):
    if case == "unknown architecture":
        pytest.importorskip("llama_cpp")
    path, words = _bad_files(tmp_path, tiny)[case]
    before = node.config_file.read_bytes()
    r = invoke(runner, "model", "add", str(path))
    assert r.exit_code == 2 and words in r.stderr and "Traceback" not in r.output
    assert node.config_file.read_bytes() == before
    j = invoke(runner, "model", "add", str(path), "--json")
    assert j.exit_code == 2 and json.loads(j.stdout)["error"]["code"] == "bad_request"
    assert node.config_file.read_bytes() == before


def test_bad_name_and_usage(runner, node, tiny):
    before = node.config_file.read_bytes()
    assert invoke(runner, "model", "add", str(tiny), "--name", "bad name!").exit_code == 2
    assert invoke(runner, "model", "add").exit_code == 2
    assert invoke(runner, "model", "add", str(tiny), "--ollama").exit_code == 2
    assert node.config_file.read_bytes() == before


# --------------------------------------------------------------------------- detection


def test_detected_servers_in_ls_doctor_and_add(runner, node, monkeypatch):
    with FakeOllama() as ollama, FakeLlamaServer() as llama:
        monkeypatch.setenv("HEARTHNET_MODELS_DETECT_OLLAMA_URL", ollama.url)
        monkeypatch.setenv("HEARTHNET_MODELS_DETECT_LLAMA_CPP_URL", llama.url)
        ls = json_result(invoke(runner, "model", "ls", "--json").stdout)
        assert [d["kind"] for d in ls["detected"]] == ["ollama", "llama_cpp_server"]
        assert ls["detected"][0]["models"] == ["qwen2.5:0.5b", "llama3.2:1b"]
        doc = invoke(runner, "doctor", "--check", "local_llm_server")
        assert doc.exit_code == 0  # a warning: no backend yet, one is right here
        assert "an Ollama server with models qwen2.5:0.5b, llama3.2:1b runs at" in doc.stdout
        assert f"hearthnet model add --ollama {ollama.url} --model qwen2.5:0.5b" in doc.stdout
        assert doc.stdout.startswith("⚠")
        r = invoke(runner, "model", "add", "--ollama", "--model", "llama3.2:1b", "--json")
        assert r.exit_code == 0, r.output
        assert backends(node) == [{"name": "ollama", "url": ollama.url, "model": "llama3.2:1b"}]
        r = invoke(runner, "model", "add", "--llama-server", "--json")
        assert r.exit_code == 0, r.output
        assert backends(node)[1] == {"name": "openai", "url": llama.url + "/v1", "model": "tiny.gguf"}
        # both configured now: nothing left to offer
        assert json_result(invoke(runner, "model", "ls", "--json").stdout)["detected"] == []
        before = node.config_file.read_bytes()
        missing = invoke(runner, "model", "add", "--ollama", "--model", "nope", "--name", "x")
        assert missing.exit_code == 2 and "has no model 'nope'" in missing.stderr
        assert node.config_file.read_bytes() == before
    gone = invoke(runner, "model", "add", "--ollama", "--url", ollama.url)
    assert gone.exit_code == 2 and "no Ollama answers" in gone.stderr


def test_detection_is_loopback_only(runner, node, monkeypatch):
    from hearthnet.errors import HearthNetError
    from hearthnet.models import detect

    with pytest.raises(HearthNetError):
        detect.get_json("http://192.0.2.1:11434/api/tags")
    monkeypatch.setenv("HEARTHNET_MODELS_DETECT_OLLAMA_URL", "http://192.0.2.1:11434")
    r = invoke(runner, "model", "add", "--ollama")
    assert r.exit_code == 2 and "loopback" in r.stderr


def test_init_hints_non_interactively_and_changes_nothing(runner, env, monkeypatch):
    with FakeOllama() as ollama:
        monkeypatch.setenv("HEARTHNET_MODELS_DETECT_OLLAMA_URL", ollama.url)
        r = invoke(runner, "init", "--non-interactive", "--name", "porch", "--json")
        assert r.exit_code == 0, r.output
        msg = json_result(r.stdout)["message"]
        assert "an Ollama server with models" in msg and "hearthnet model add --ollama" in msg
        assert backends(env) == []


def test_init_interactive_offer_accepted(runner, env, monkeypatch):
    with FakeOllama(models=("qwen2.5:0.5b",)) as ollama:
        monkeypatch.setenv("HEARTHNET_MODELS_DETECT_OLLAMA_URL", ollama.url)
        r = invoke(runner, "init", "--name", "porch", input="\n\n\n\ny\n")
        assert r.exit_code == 0, r.output
        assert "as this node's LLM?" in " ".join(r.stderr.split())
        assert backends(env) == [{"name": "ollama", "url": ollama.url, "model": "qwen2.5:0.5b"}]


# --------------------------------------------------------------------------- pull


def _catalogue(env, monkeypatch, srv, sha: str | None) -> None:
    cat = env.root / "cat.json"
    cat.write_text(json.dumps({"models": [{"name": "tiny", "url": "https://example.invalid/tiny.gguf",
                                           "file": "tiny.gguf", "sha256": sha, "license": "MIT"}]}))
    monkeypatch.setenv("HEARTHNET_MODELS_CATALOGUE_FILE", str(cat))
    monkeypatch.setenv("HEARTHNET_MODELS_CATALOGUE_URL_BASE", srv.url)


def test_pull_resumes_checks_and_adds(runner, node, monkeypatch, tiny):
    data = tiny.read_bytes()
    sha = hashlib.sha256(data).hexdigest()
    with FileServer({"tiny.gguf": data}, drop_after=len(data) // 3, drops=1) as srv:
        _catalogue(node, monkeypatch, srv, sha)
        r = invoke(runner, "model", "pull", "tiny", "--json")
        assert r.exit_code == 0, r.output
        doc = json_result(r.stdout)
        assert set(doc) == ADD_KEYS and doc["source"] == "pull"
        assert doc["download"]["sha256"] == sha and doc["download"]["attempts"] == 2
        dest = node.data / "hearthnet" / "models" / "tiny.gguf"
        assert dest.read_bytes() == data and backends(node)[0]["model_path"] == str(dest)
        assert srv.requests[1]["range"] == f"bytes={len(data) // 3}-"
        # the file is there with the right sha256: a second pull only adds it again
        assert invoke(runner, "model", "rm", "tiny").exit_code == 0
        again = invoke(runner, "model", "pull", "tiny")
        assert again.exit_code == 0 and "Already downloaded" in again.stdout and len(srv.requests) == 2


def test_pull_checksum_mismatch_and_unverified(runner, node, monkeypatch, tiny):
    with FileServer({"tiny.gguf": tiny.read_bytes()}) as srv:
        _catalogue(node, monkeypatch, srv, "0" * 64)
        before = node.config_file.read_bytes()
        r = invoke(runner, "model", "pull", "tiny")
        assert r.exit_code == 1 and "does not match" in r.stderr and "deleted" in r.stderr
        j = invoke(runner, "model", "pull", "tiny", "--json")
        assert j.exit_code == 1 and json.loads(j.stdout)["error"]["code"] == "checksum_mismatch"
        assert list((node.data / "hearthnet" / "models").iterdir()) == []
        assert node.config_file.read_bytes() == before
        _catalogue(node, monkeypatch, srv, None)
        r = invoke(runner, "model", "pull", "tiny")
        assert r.exit_code == 2 and "--sha256" in r.stderr and len(srv.requests) == 2


def test_pull_refuses_when_offline(runner, node, monkeypatch, tiny):
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as dead:  # a DNS "resolver" that never answers
        dead.bind(("127.0.0.1", 0))
        port = dead.getsockname()[1]
        monkeypatch.setenv("HEARTHNET_EMERGENCY_PROBE_TARGETS", f"dns:127.0.0.1:{port},dns:127.0.0.1:{port}")
        with FileServer({"tiny.gguf": tiny.read_bytes()}) as srv:
            _catalogue(node, monkeypatch, srv, "0" * 64)
            r = invoke(runner, "model", "pull", "tiny")
            assert r.exit_code == 1 and "is offline" in r.stderr and "model add" in r.stderr
            j = invoke(runner, "model", "pull", "tiny", "--json")
            assert json.loads(j.stdout)["error"]["code"] == "offline"
            assert srv.requests == []
