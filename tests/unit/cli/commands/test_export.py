"""`hearthnet export` and `hearthnet export --verify` through click (isolated XDG dirs from
tests/unit/cli/conftest.py)."""
from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest

from tests.unit.cli.conftest import invoke, json_result
from tests.unit.test_export import make_node, populate, rewrite_zip

EXPORT_KEYS = {"path", "node_id", "community_id", "created_at", "format_version", "bytes", "files", "counts"}
VERIFY_KEYS = {"valid", "path", "node_id", "created_at", "format_version", "files", "problems"}


@pytest.fixture
def node():
    cfg, kp = make_node()
    return populate(cfg, kp)


def test_export_writes_a_zip_that_verifies(runner, node, tmp_path: Path) -> None:
    out = tmp_path / "me.zip"
    result = invoke(runner, "export", "--out", str(out))
    assert result.exit_code == 0, result.output
    assert "Wrote" in result.stdout and str(out) in result.stdout
    assert "10 event(s)" in result.stdout
    check = invoke(runner, "export", "--verify", str(out))
    assert check.exit_code == 0, check.output
    assert "valid export" in check.stdout


def test_export_json_keys(runner, node, tmp_path: Path) -> None:
    out = tmp_path / "me.zip"
    doc = json_result(invoke(runner, "export", "--out", str(out), "--json").stdout)
    assert set(doc) == EXPORT_KEYS
    assert doc["node_id"] == node.kp.node_id_full and doc["format_version"] == 1
    assert [f["name"] for f in doc["files"]][0] == "node_manifest.json"
    verify = json_result(invoke(runner, "export", "--verify", str(out), "--json").stdout)
    assert set(verify) == VERIFY_KEYS and verify["valid"] is True and verify["problems"] == []


def test_export_default_path_is_in_home(runner, node, tmp_path: Path, monkeypatch) -> None:
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    result = invoke(runner, "export")
    assert result.exit_code == 0, result.output
    (made,) = home.glob("hearthnet-export-*.zip")
    assert len(made.name) == len("hearthnet-export-2026-11-26.zip")


def test_export_refuses_to_overwrite_without_force(runner, node, tmp_path: Path) -> None:
    out = tmp_path / "me.zip"
    out.write_text("keep me")
    refused = invoke(runner, "export", "--out", str(out))
    assert refused.exit_code == 2 and "already exists" in refused.stderr and "--force" in refused.stderr
    assert out.read_text() == "keep me"
    forced = invoke(runner, "export", "--out", str(out), "--force")
    assert forced.exit_code == 0 and zipfile.is_zipfile(out)


def test_tampered_member_verify_exit_4(runner, node, tmp_path: Path) -> None:
    out = tmp_path / "me.zip"
    invoke(runner, "export", "--out", str(out))
    with zipfile.ZipFile(out) as zf:
        market = zf.read("market.jsonl")
    bad = tmp_path / "bad.zip"
    rewrite_zip(out, bad, {"market.jsonl": market.replace(b"Free ladder", b"Cheap ladder")})
    result = invoke(runner, "export", "--verify", str(bad))
    assert result.exit_code == 4
    assert "NOT a valid export" in result.stdout and "market.jsonl" in result.stdout
    doc = json.loads(invoke(runner, "export", "--verify", str(bad), "--json").stdout)
    assert doc["valid"] is False and any("market.jsonl" in p for p in doc["problems"])


def test_verify_not_an_export_exit_2(runner, tmp_path: Path) -> None:
    junk = tmp_path / "junk.zip"
    junk.write_text("not a zip")
    result = invoke(runner, "export", "--verify", str(junk))
    assert result.exit_code == 2 and "not a ZIP" in result.stderr
    missing = invoke(runner, "export", "--verify", str(tmp_path / "nope.zip"), "--json")
    assert missing.exit_code == 2
    assert json.loads(missing.stdout)["error"]["code"] == "not_an_export"


def test_verify_with_out_is_a_usage_error(runner, tmp_path: Path) -> None:
    result = invoke(runner, "export", "--verify", str(tmp_path / "a.zip"), "--out", str(tmp_path / "b.zip"))
    assert result.exit_code == 2


def test_export_before_init_says_run_init(runner, tmp_path: Path) -> None:
    result = invoke(runner, "export", "--out", str(tmp_path / "x.zip"))
    assert result.exit_code == 1
    assert "hearthnet init" in result.stderr and "Traceback" not in result.output
    assert not (tmp_path / "x.zip").exists()
