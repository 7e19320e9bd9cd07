"""`hearthnet erase` through click: three questions, nothing removed on abort, --yes,
--keep-keys then `hearthnet init` (isolated XDG dirs from tests/unit/cli/conftest.py)."""
from __future__ import annotations

import json

import pytest

from tests.unit.cli.conftest import invoke, json_result
from tests.unit.test_erase import full_node, listing

ERASE_KEYS = {"erased", "stopped", "steps", "bytes_removed", "config", "leftovers"}


@pytest.fixture
def node():
    return full_node()


def test_erase_ctrl_c_at_second_prompt_removes_nothing(runner, env, node, monkeypatch) -> None:
    from rich.prompt import Confirm

    asked: list[str] = []

    def ask(cls, prompt, **kwargs):
        asked.append(str(prompt))
        if len(asked) == 2:
            raise KeyboardInterrupt
        return True

    monkeypatch.setattr(Confirm, "ask", classmethod(ask))
    before = listing(env.root)
    result = invoke(runner, "erase")
    assert result.exit_code == 2, result.output
    assert len(asked) == 2
    assert "nothing was removed" in result.stderr and "Traceback" not in result.output
    assert listing(env.root) == before


@pytest.mark.parametrize("answers", ["n\n", "y\nn\n", "y\ny\nn\n", "y\n", ""])
def test_erase_any_no_or_end_of_input_removes_nothing(runner, env, node, answers: str) -> None:
    before = listing(env.root)
    result = invoke(runner, "erase", input=answers)
    assert result.exit_code == 2, result.output
    assert listing(env.root) == before


def test_erase_after_three_yes(runner, env, node) -> None:
    result = invoke(runner, "erase", input="y\ny\ny\n")
    assert result.exit_code == 0, result.output
    assert result.stderr.count("[y/n]") == 3
    assert "delete  keys" in result.stderr  # the plan was shown before asking
    assert "Erased" in result.stdout and "communities" in result.stdout
    assert not node.identity.keys_dir.exists() and not env.config_file.exists()
    assert not node.paths.communities_dir.exists()


def test_erase_yes_json(runner, env, node) -> None:
    result = invoke(runner, "erase", "--yes", "--json")
    assert result.exit_code == 0, result.output
    doc = json_result(result.stdout)
    assert set(doc) == ERASE_KEYS
    assert [s["step"] for s in doc["steps"]] == ["communities", "peers", "peers", "blobs", "embeddings", "logs", "keys", "tls"]
    assert all(s["status"] == "removed" for s in doc["steps"])
    assert doc["config"]["status"] == "deleted" and doc["stopped"]["running"] is False
    again = json.loads(invoke(runner, "erase", "--yes", "--json").stdout)
    assert again["erased"] is False


def test_erase_keep_keys(runner, env, node) -> None:
    key_files = {p.name: p.read_bytes() for p in node.identity.keys_dir.iterdir()}
    node_id = node.community.community_id  # the founder's community id is its node id
    result = invoke(runner, "erase", "--keep-keys", "--yes")
    assert result.exit_code == 0, result.output
    assert {p.name: p.read_bytes() for p in node.identity.keys_dir.iterdir()} == key_files
    assert not node.paths.communities_dir.exists()
    assert "community_id" not in env.config_file.read_text()
    init = invoke(runner, "init", "--non-interactive", "--json")
    assert init.exit_code == 0, init.output
    doc = json.loads(init.stdout)
    assert doc["changed"] is True and doc["node_id"] == node_id and doc["community_id"] == node_id


def test_erase_keep_blobs_and_logs(runner, env, node) -> None:
    doc = json.loads(invoke(runner, "erase", "--yes", "--keep-blobs", "--keep-logs", "--json").stdout)
    status = {s["step"]: s["status"] for s in doc["steps"]}
    assert status["blobs"] == "kept" and status["logs"] == "kept"
    assert (node.paths.data_dir / "blobs").exists() and node.paths.log_dir.exists()


def test_erase_refuses_a_config_pointing_outside(runner, env, node) -> None:
    from hearthnet.config import update_config_file

    update_config_file(env.config_file, {"file": {"blobs_dir": "/"}})
    before = listing(env.root)
    result = invoke(runner, "erase", "--yes")
    assert result.exit_code == 1
    assert "refusing to erase" in result.stderr and "file.blobs_dir = /" in result.stderr
    assert listing(env.root) == before
