"""Switching a running node's community (hearthnet.onboarding.switch): the solo check,
invite text only, the preview that writes nothing, and the join itself for a node that
founded its own community (against the inviter stand-in), which keeps the old one."""
from __future__ import annotations

import socket
import tomllib
from pathlib import Path
from typing import Any

import pytest

from hearthnet.config import community_state_dir, load_config, update_config_file
from hearthnet.identity import keys
from hearthnet.identity.manifest import build_genesis_community_manifest, write_community_manifest
from hearthnet.onboarding import switch
from hearthnet.onboarding.errors import OnboardingError
from hearthnet.onboarding.invite import encode_invite, sign_invite
from tests.unit.onboarding.inviter_server import Inviter, running_inviter

ME = "ed25519:" + "a" * 52
OTHER = "ed25519:" + "b" * 52


def members(*ids: str, revoked: tuple[str, ...] = ()) -> dict[str, Any]:
    return {"members": [{"node_id": i, "level": "anchor"} for i in ids],
            "revoked": [{"node_id": r} for r in revoked]}


def test_only_a_node_alone_in_its_community_with_only_its_own_events_is_solo() -> None:
    assert switch.solo_problem(ME, members(ME), [ME, ME]) is None
    assert "1 other member" in switch.solo_problem(ME, members(ME, OTHER), [ME])
    assert "revoked" in switch.solo_problem(ME, members(ME, revoked=(OTHER,)), [ME])
    assert "1 other node" in switch.solo_problem(ME, members(ME), [ME, OTHER])
    assert switch.solo_problem(ME, members(OTHER), []) is not None  # not even a member
    assert switch.solo_problem(ME, {}, []) is not None


@pytest.mark.parametrize("text", [None, 5, "", "   ", "hello", "hearthnet://v1/AAAA", "x" * 20_000,
                                  "/etc/passwd"])
def test_only_invite_text_is_taken(text: Any) -> None:
    with pytest.raises(OnboardingError) as err:
        switch.parse_invite(text)
    assert err.value.code == "invite_invalid"


@pytest.fixture
def me() -> keys.KeyPair:
    return keys.load_or_generate(load_config().identity.keys_dir)


@pytest.fixture
def solo(me: keys.KeyPair) -> Path:
    """This node as `hearthnet init` leaves it: its own genesis community in config.toml."""
    cfg = load_config()
    manifest = build_genesis_community_manifest(me, "Just me")
    state = community_state_dir(cfg.paths, me.node_id_full)
    write_community_manifest(manifest, state / "manifest.json")
    path = cfg.paths.config_file
    path.parent.mkdir(parents=True, exist_ok=True)
    update_config_file(path, {"node": {"display_name": "porch"},
                              "community": {"community_id": me.node_id_full, "name": "Just me"}})
    return state


@pytest.fixture
def alice(tmp_path: Path) -> Any:
    with running_inviter(tmp_path, keys.generate()) as inviter:
        yield inviter


def invite_text(inviter: Inviter, invitee: str, port: int | None = None) -> str:
    ev = inviter.invite(invitee, "member")
    return encode_invite(sign_invite(
        inviter.kp, community_id=inviter.community_id, community_name="Maple Street", invitee_node_id=invitee,
        initial_level="member", expires_at=ev["data"]["expires_at"],
        bootstrap_endpoints=[{"transport": "https", "host": "127.0.0.1", "port": port or inviter.port}]))


def test_the_preview_reaches_the_inviter_and_writes_nothing(alice, me, solo) -> None:
    cfg = load_config()
    before = cfg.paths.config_file.read_text()
    p = switch.preview_invite(cfg, me, invite_text(alice, me.node_id_full))
    assert (p.community_id, p.community_name, p.inviter_display_name, p.level) == (
        alice.community_id, "Maple Street", "alice", "member")
    assert p.members == 1 and not p.same_community and p.bootstrap.endswith(str(alice.port))
    assert p.to_dict()["community_id_short"]
    assert cfg.paths.config_file.read_text() == before
    assert not community_state_dir(cfg.paths, alice.community_id).exists()


def test_an_unreachable_inviter_or_a_foreign_invite_is_refused(alice, me, solo) -> None:
    cfg = load_config()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    with pytest.raises(OnboardingError) as err:
        switch.preview_invite(cfg, me, invite_text(alice, me.node_id_full, port=closed))
    assert err.value.code == "bootstrap_unreachable"
    with pytest.raises(OnboardingError) as err:
        switch.preview_invite(cfg, me, invite_text(alice, keys.generate().node_id_full))
    assert err.value.code == "invitee_mismatch"


def test_a_solo_node_joins_and_keeps_its_old_community(alice, me, solo) -> None:
    cfg = load_config()
    assert not switch.has_custom_state_dir(cfg)
    cleared = switch.without_community(cfg)
    assert cleared.community.community_id is None and cleared.community.state_dir is None
    result = switch.join_from_solo(cfg, me, invite_text(alice, me.node_id_full))
    assert result.changed and result.community_id == alice.community_id and result.level == "member"
    after = tomllib.loads(cfg.paths.config_file.read_text())
    assert after["community"]["community_id"] == alice.community_id
    assert after["node"]["display_name"] == "porch"  # the name is kept
    assert (solo / "manifest.json").exists()  # the old community stays on disk
    assert (community_state_dir(cfg.paths, alice.community_id) / "events.sqlite").exists()
    assert me.node_id_full in alice.log.view.members


def test_a_state_dir_named_in_config_is_noticed(me, solo, tmp_path) -> None:
    cfg = load_config()
    update_config_file(cfg.paths.config_file, {"community": {"state_dir": str(tmp_path / "mine")}})
    assert switch.has_custom_state_dir(load_config())
