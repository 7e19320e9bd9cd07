from __future__ import annotations

import json
import os
import stat
import tomllib
from pathlib import Path

import pytest

from hearthnet.config import load_config
from hearthnet.errors import HearthNetError, IdentityError, UserAbort
from hearthnet.identity import keys
from hearthnet.identity.manifest import read_community_manifest
from hearthnet.node_init import InitOptions, init_node
from tests.unit.xdg_fixture import isolated_xdg  # noqa: F401  (autouse)


class Scripted:
    """A prompter with canned answers; records every question."""

    def __init__(self, answers: list[str] | None = None, confirm: bool = True,
                 interrupt_on: int | None = None) -> None:
        self.answers = list(answers or [])
        self.confirm_answer = confirm
        self.interrupt_on = interrupt_on
        self.asked: list[tuple[str, str]] = []
        self.confirmed: list[str] = []

    def ask(self, text: str, default: str) -> str:
        self.asked.append((text, default))
        if self.interrupt_on is not None and len(self.asked) > self.interrupt_on:
            raise KeyboardInterrupt
        return self.answers.pop(0) if self.answers else default

    def confirm(self, text: str, default: bool) -> bool:
        self.confirmed.append(text)
        return self.confirm_answer


def _opts(**over: object) -> InitOptions:
    base = dict(name="Anna's laptop", profile="hearth", interactive=False, config_path=None)
    base.update(over)
    return InitOptions(**base)  # type: ignore[arg-type]


def _snapshot(root: Path) -> dict[str, tuple[bytes, int, int]]:
    """Every file under root with content, mtime and mode."""
    out = {}
    for p in sorted(root.rglob("*")):
        if p.is_file():
            st = p.stat()
            out[str(p.relative_to(root))] = (p.read_bytes(), st.st_mtime_ns, stat.S_IMODE(st.st_mode))
    return out


def _files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def test_init_writes_config_and_keys(tmp_path: Path) -> None:
    prompt = Scripted()
    result = init_node(_opts(), prompt=prompt)
    assert prompt.asked == [] and prompt.confirmed == []  # non-interactive asks nothing
    assert result.changed is True
    data = tmp_path / "data" / "hearthnet"
    keys_dir = data / "keys"
    assert result.keys_dir == keys_dir
    assert stat.S_IMODE((keys_dir / "device.ed25519").stat().st_mode) == 0o600
    assert stat.S_IMODE((keys_dir / "device.pub").stat().st_mode) == 0o644
    assert stat.S_IMODE(keys_dir.stat().st_mode) == 0o700
    kp = keys.load(keys_dir)
    assert result.node_id == kp.node_id_full and result.node_id_short == kp.node_id_short

    cfg = load_config()
    assert result.config_path == cfg.source == tmp_path / "config" / "hearthnet" / "config.toml"
    assert cfg.community.community_id == kp.node_id_full == result.community_id
    assert cfg.community.name == result.community_name == "Anna's laptop's neighbourhood"
    assert cfg.node.display_name == "Anna's laptop" and cfg.node.profile == "hearth"
    assert cfg.source.read_text().startswith("# HearthNet node configuration.")

    manifest = read_community_manifest(data / "communities" / kp.node_id_full / "manifest.json")
    assert manifest["root_key"] == kp.node_id_full
    assert cfg.community_manifest_path == data / "communities" / kp.node_id_full / "manifest.json"
    for d in ("cache/hearthnet", "state/hearthnet/log"):
        assert (tmp_path / d).is_dir()

    d = result.to_dict()
    assert list(d) == ["changed", "node_id", "node_id_short", "display_name", "profile", "community_id",
                       "community_id_short", "community_name", "config_path", "keys_dir", "message"]
    json.dumps(d)


def test_init_rerun_changes_nothing(tmp_path: Path) -> None:
    first = init_node(_opts(), prompt=Scripted())
    before = _snapshot(tmp_path)
    prompt = Scripted()
    again = init_node(_opts(name="Other name", profile="anchor", interactive=True), prompt=prompt)
    assert again.changed is False
    assert "already initialised" in again.message
    assert (again.node_id, again.community_id) == (first.node_id, first.community_id)
    assert again.display_name == "Anna's laptop"
    assert prompt.asked == [] and prompt.confirmed == []
    assert _snapshot(tmp_path) == before


def test_user_abort_writes_nothing(tmp_path: Path) -> None:
    prompt = Scripted(confirm=False)
    with pytest.raises(UserAbort) as err:
        init_node(_opts(name=None, profile=None, interactive=True), prompt=prompt)
    assert err.value.exit_code == 2
    assert len(prompt.asked) == 3 and len(prompt.confirmed) == 1
    assert _files(tmp_path) == []
    assert not (tmp_path / "data").exists() and not (tmp_path / "config").exists()


def test_ctrl_c_during_prompts_is_user_abort(tmp_path: Path) -> None:
    prompt = Scripted(interrupt_on=1)
    with pytest.raises(UserAbort):
        init_node(_opts(name=None, profile=None, interactive=True), prompt=prompt)
    assert _files(tmp_path) == []


def test_interactive_answers_are_used(tmp_path: Path) -> None:
    prompt = Scripted(answers=["Bob's Pi", "castle", "spark", "Elm Street"])
    result = init_node(_opts(name=None, profile=None, interactive=True), prompt=prompt)
    assert (result.display_name, result.profile, result.community_name) == ("Bob's Pi", "spark", "Elm Street")
    assert len(prompt.asked) == 4  # the invalid profile was asked again
    assert prompt.asked[3][1] == "Bob's Pi's neighbourhood"  # default community name
    cfg = load_config()
    assert cfg.node.profile == "spark" and cfg.community.name == "Elm Street"


def test_existing_key_is_kept(tmp_path: Path) -> None:
    keys_dir = tmp_path / "data" / "hearthnet" / "keys"
    kp = keys.load_or_generate(keys_dir)
    seed = (keys_dir / "device.ed25519").read_bytes()
    result = init_node(_opts(), prompt=Scripted())
    assert result.node_id == kp.node_id_full
    assert (keys_dir / "device.ed25519").read_bytes() == seed


def test_unsafe_key_permissions_stop_init(tmp_path: Path) -> None:
    keys_dir = tmp_path / "data" / "hearthnet" / "keys"
    keys.load_or_generate(keys_dir)
    os.chmod(keys_dir / "device.ed25519", 0o644)
    with pytest.raises(IdentityError) as err:
        init_node(_opts(), prompt=Scripted())
    assert err.value.code == "keys_permissions"
    assert not (tmp_path / "config").exists()


def test_bad_profile_option_is_usage_error(tmp_path: Path) -> None:
    with pytest.raises(HearthNetError) as err:
        init_node(_opts(profile="castle"), prompt=Scripted())
    assert err.value.code == "usage" and "castle" in err.value.message
    assert _files(tmp_path) == []


def test_init_keeps_user_settings_and_env_refs(tmp_path: Path) -> None:
    path = tmp_path / "config" / "hearthnet" / "config.toml"
    path.parent.mkdir(parents=True)
    path.write_text('[ui]\nport = 7870\n[[llm.backends]]\nname = "openai"\nurl = "http://${LLM_HOST}:1"\n')
    env = {**os.environ, "LLM_HOST": "10.0.0.9", "HEARTHNET_TRANSPORT_PORT": "7099"}
    init_node(_opts(), prompt=Scripted(), env=env)
    raw = tomllib.loads(path.read_text())
    assert raw["ui"]["port"] == 7870
    assert raw["llm"]["backends"][0]["url"] == "http://${LLM_HOST}:1"
    assert "transport" not in raw  # the env override was not baked into the file
    assert raw["community"]["community_id"].startswith("ed25519:")


def test_lost_config_reuses_existing_community(tmp_path: Path) -> None:
    first = init_node(_opts(community_name="Elm Street"), prompt=Scripted())
    manifest = Path(tmp_path / "data" / "hearthnet" / "communities" / first.community_id / "manifest.json")
    before = (manifest.read_bytes(), manifest.stat().st_mtime_ns)
    first.config_path.unlink()
    again = init_node(_opts(), prompt=Scripted())
    assert again.changed is True
    assert again.community_id == first.community_id and again.community_name == "Elm Street"
    assert (manifest.read_bytes(), manifest.stat().st_mtime_ns) == before
    assert load_config().community.community_id == first.community_id


def test_configured_community_without_key_is_refused(tmp_path: Path) -> None:
    init_node(_opts(), prompt=Scripted())
    keys_dir = tmp_path / "data" / "hearthnet" / "keys"
    for p in keys_dir.iterdir():
        p.unlink()
    with pytest.raises(IdentityError) as err:
        init_node(_opts(), prompt=Scripted())
    assert err.value.code == "keys_missing" and "backup" in err.value.message
    assert list(keys_dir.iterdir()) == []  # no new identity was minted


def test_init_writes_exactly_the_three_genesis_events(tmp_path: Path) -> None:
    from hearthnet.ledger.events import verify_event_signature
    from hearthnet.ledger.store import EventLog

    result = init_node(_opts(), prompt=Scripted())
    cfg = load_config()
    db = cfg.community.state_dir / "events.sqlite"
    manifest = read_community_manifest(cfg.community_manifest_path)
    log = EventLog(db, result.community_id)
    try:
        events = log.events()
        assert [(e["lamport"], e["event_type"]) for e in events] == [
            (1, "community.created"), (2, "community.member.invited"), (3, "community.member.joined")]
        assert all(e["author"] == result.node_id and verify_event_signature(e) for e in events)
        assert all(e["wall_clock"] == manifest["created_at"] for e in events)
        assert events[0]["data"] == {"name": manifest["name"], "founder_node_id": result.node_id,
                                     "policy": manifest["policy"]}
        joined = events[2]["data"]
        assert joined["invite_event_id"] == events[1]["event_id"]
        assert joined["node_manifest"]["display_name"] == "Anna's laptop"
        assert joined["node_manifest"]["profile"] == "hearth"
        assert log.clock == 3
        # The ledger's view of the log gives the same membership as the genesis manifest.
        assert log.view.manifest_body()["members"] == manifest["members"]
    finally:
        log.close()
    assert sorted(p.name for p in db.parent.iterdir()) == ["events.sqlite", "manifest.json"]
