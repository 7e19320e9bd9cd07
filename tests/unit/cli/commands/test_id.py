from __future__ import annotations

import json
import os

from hearthnet.onboarding.invite import decode_node_id_text
from hearthnet.onboarding.qr import read_qr_png
from tests.unit.cli.conftest import invoke, json_result


def files(root):
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def test_id_on_an_empty_home_creates_only_the_key(runner, env):
    result = invoke(runner, "id")
    assert result.exit_code == 0, result.output
    assert files(env.root) == ["data/hearthnet/keys/device.ed25519", "data/hearthnet/keys/device.pub"]
    assert (env.data / "hearthnet" / "keys" / "device.ed25519").stat().st_mode & 0o777 == 0o600
    assert (env.data / "hearthnet").stat().st_mode & 0o777 == 0o700
    assert "Created this device's key" in result.stderr
    out = result.stdout
    assert "This device: ed25519:" in out and "hearthnet-id://v1/" in out and "█" in out
    assert "hearthnet invite create --node-id" in out


def test_id_json_is_stable_and_names_the_full_id(runner, env):
    first = json_result(invoke(runner, "id", "--json").stdout)
    again = invoke(runner, "id", "--json")
    assert json_result(again.stdout) == first and "Created" not in again.stderr
    assert set(first) == {"node_id", "node_id_short", "id_text"}
    node_id, name = decode_node_id_text(first["id_text"])
    assert node_id == first["node_id"] and name
    assert first["node_id_short"].startswith("ed25519:") and len(first["node_id_short"]) == 27


def test_id_png(runner, env):
    path = env.root / "me.png"
    result = invoke(runner, "id", "--png", str(path), "--json")
    assert result.exit_code == 0, result.output
    assert read_qr_png(path) == json.loads(result.stdout)["id_text"]


def test_id_refuses_an_unsafe_key(runner, env):
    invoke(runner, "id")
    key = env.data / "hearthnet" / "keys" / "device.ed25519"
    before = key.read_bytes()
    os.chmod(key, 0o644)
    result = invoke(runner, "id", "--json")
    assert result.exit_code == 1 and json.loads(result.stdout)["error"]["code"] == "keys_permissions"
    assert key.read_bytes() == before
