"""redeem_invite against an inviter stand-in (inviter_server.py): the whole join, what it
writes and in which order, and each way it can fail, leaving the node unjoined."""
from __future__ import annotations

import json
import socket
import tomllib
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from hearthnet.config import load_config, update_config_file
from hearthnet.errors import UserAbort
from hearthnet.identity import keys
from hearthnet.identity.manifest import build_genesis_community_manifest, parse_rfc3339, write_community_manifest
from hearthnet.ledger.store import EventLog
from hearthnet.node_init import DefaultsPrompter
from hearthnet.onboarding.errors import OnboardingError
from hearthnet.onboarding.invite import InviteBlob, encode_invite, sign_invite
from hearthnet.onboarding.join import load_invite_text, redeem_invite
from hearthnet.onboarding.qr import write_qr_png
from tests.unit.onboarding.inviter_server import Inviter, running_inviter


class Answer:
    def __init__(self, yes: bool) -> None:
        self.yes, self.asked = yes, []

    def ask(self, text: str, default: str) -> str:
        raise AssertionError("a redeem asks no questions but the confirmation")

    def confirm(self, text: str, default: bool) -> bool:
        self.asked.append(text)
        return self.yes


@pytest.fixture
def me() -> keys.KeyPair:
    return keys.load_or_generate(load_config().identity.keys_dir)


@pytest.fixture
def alice(tmp_path: Path) -> Any:
    with running_inviter(tmp_path, keys.generate()) as inviter:
        yield inviter


def blob_for(inviter: Inviter, invitee: str, *, port: int | None = None, level: str = "member",
             expires_at: str | None = None) -> InviteBlob:
    ev = inviter.invite(invitee, level)
    return sign_invite(inviter.kp, community_id=inviter.community_id, community_name="Maple Street",
                       invitee_node_id=invitee, initial_level=level,
                       bootstrap_endpoints=[{"transport": "https", "host": "127.0.0.1",
                                             "port": port or inviter.port}],
                       expires_at=expires_at or ev["data"]["expires_at"])


def written(tmp_path: Path) -> list[str]:
    """Files under the XDG tree, minus the device key."""
    return sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*")
                  if p.is_file() and "keys" not in p.parts and "inviter-" not in str(p))


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_full_join(alice, me, tmp_path):
    text = encode_invite(blob_for(alice, me.node_id_full))
    prompt = Answer(True)
    result = redeem_invite(load_config(), me, text, prompt=prompt, display_name="porch")
    assert result.changed and result.level == "member" and result.inviter_display_name == "alice"
    assert "Maple Street" in prompt.asked[0] and "invited by  alice" in prompt.asked[0]
    cfg = load_config()
    assert (cfg.community.community_id, cfg.community.name, cfg.node.display_name) == (
        alice.community_id, "Maple Street", "porch")
    # our log: the inviter's whole log, then our join
    log = EventLog(cfg.community.state_dir / "events.sqlite", alice.community_id)
    try:
        types = [(e["event_type"], e["author"]) for e in log.events()]
    finally:
        log.close()
    assert types[:4] == [("community.created", alice.kp.node_id_full),
                         ("community.member.invited", alice.kp.node_id_full),
                         ("community.member.joined", alice.kp.node_id_full),
                         ("community.member.invited", alice.kp.node_id_full)]
    assert types[4] == ("community.member.joined", me.node_id_full) and result.events_pulled == 4
    # the inviter got our join, and the manifest we keep lists us
    assert alice.log.view.level_of(me.node_id_full) == "member"
    assert alice.seen == ["/sync/v1/ids", "/sync/v1/pull", "/sync/v1/admit", "/sync/v1/events"]
    manifest = json.loads(cfg.community_manifest_path.read_text())
    assert me.node_id_full in [m["node_id"] for m in manifest["members"]]
    # the inviter is pinned and in the peer cache
    pins = json.loads((cfg.paths.tls_dir / "known_peers.json").read_text())["pins"]
    assert pins[alice.kp.node_id_full]["fingerprint"] == alice.tls.fingerprint
    peers = json.loads((cfg.paths.data_dir / "peers.json").read_text())["peers"]
    assert [(p["host"], p["port"], p["node_id"]) for p in peers] == [("127.0.0.1", alice.port, alice.kp.node_id_full)]
    # again: nothing to do
    again = redeem_invite(cfg, me, text, prompt=Answer(False))
    assert not again.changed and "already a member" in again.message and again.level == "member"


def test_declining_the_preview_writes_nothing(alice, me, tmp_path):
    with pytest.raises(UserAbort):
        redeem_invite(load_config(), me, encode_invite(blob_for(alice, me.node_id_full)), prompt=Answer(False))
    assert written(tmp_path) == []


def test_unreachable_bootstrap(alice, me, tmp_path):
    blob = blob_for(alice, me.node_id_full, port=closed_port())
    with pytest.raises(OnboardingError) as err:
        redeem_invite(load_config(), me, encode_invite(blob), prompt=DefaultsPrompter())
    assert err.value.code == "bootstrap_unreachable" and err.value.exit_code == 1
    assert "hearthnet run" in err.value.details["hint"]
    assert written(tmp_path) == []


def test_endpoint_serving_another_node_is_not_the_inviter(alice, me, tmp_path):
    alice.manifest_kp = keys.generate()
    with pytest.raises(OnboardingError) as err:
        redeem_invite(load_config(), me, encode_invite(blob_for(alice, me.node_id_full)), prompt=DefaultsPrompter())
    assert err.value.code == "bootstrap_unreachable" and "not " + alice.kp.node_id_full in err.value.message


@pytest.mark.parametrize("served", ["other_community", "forged", "garbage"])
def test_community_manifest_must_verify_and_be_the_invites(alice, me, tmp_path, served):
    other = keys.generate()
    alice.community_manifest = {
        "other_community": lambda: build_genesis_community_manifest(other, "Elsewhere"),
        "forged": lambda: {**alice.log.view.manifest(alice.kp), "name": "Renamed"},
        "garbage": lambda: {"hello": "world"},
    }[served]
    with pytest.raises(OnboardingError) as err:
        redeem_invite(load_config(), me, encode_invite(blob_for(alice, me.node_id_full)), prompt=DefaultsPrompter())
    assert err.value.code == "community_manifest_invalid" and err.value.exit_code == 4
    assert written(tmp_path) == []


def test_refused_sync_fails_and_a_retry_resumes(alice, me, tmp_path):
    text = encode_invite(blob_for(alice, me.node_id_full))
    alice.refuse_sync = True
    with pytest.raises(OnboardingError) as err:
        redeem_invite(load_config(), me, text, prompt=DefaultsPrompter())
    assert err.value.code == "sync_failed" and "revoked" in err.value.details["hint"]
    assert load_config().community.community_id is None  # not joined
    alice.refuse_sync = False
    assert redeem_invite(load_config(), me, text, prompt=DefaultsPrompter()).changed


def test_rejected_push_fails_and_a_retry_resends_the_same_join(alice, me, tmp_path):
    text = encode_invite(blob_for(alice, me.node_id_full))
    alice.reject_push = True
    with pytest.raises(OnboardingError) as err:
        redeem_invite(load_config(), me, text, prompt=DefaultsPrompter())
    assert err.value.code == "sync_failed" and "refused our join (unauthorized)" in err.value.message
    assert load_config().community.community_id is None
    alice.reject_push = False
    result = redeem_invite(load_config(), me, text, prompt=DefaultsPrompter())
    assert result.changed and result.events_pulled == 0  # the log was complete already
    assert alice.log.view.is_member(me.node_id_full)
    joins = alice.log.events(event_types=["community.member.joined"], author=me.node_id_full)
    assert [e["event_id"] for e in joins] == [result.joined_event_id]


def test_invite_missing_from_the_inviters_log(alice, me, tmp_path):
    blob = sign_invite(alice.kp, community_id=alice.community_id, community_name="Maple Street",
                       invitee_node_id=me.node_id_full, initial_level="member",
                       bootstrap_endpoints=[{"transport": "https", "host": "127.0.0.1", "port": alice.port}],
                       expires_at="2099-01-01T00:00:00Z")
    alice.invite(keys.generate().node_id_full)  # someone else's
    alice.open_sync = True
    with pytest.raises(OnboardingError) as err:
        redeem_invite(load_config(), me, encode_invite(blob), prompt=DefaultsPrompter())
    assert err.value.code == "sync_failed" and "holds no invite for this node" in err.value.message
    assert load_config().community.community_id is None


def test_invite_expired_in_the_log_is_expired(alice, me, tmp_path):
    ev = alice.invite(me.node_id_full, hours=-1)
    blob = sign_invite(alice.kp, community_id=alice.community_id, community_name="Maple Street",
                       invitee_node_id=me.node_id_full, initial_level="member",
                       bootstrap_endpoints=[{"transport": "https", "host": "127.0.0.1", "port": alice.port}],
                       expires_at="2099-01-01T00:00:00Z")  # the blob claims more than the log holds
    assert ev["data"]["expires_at"] < blob.expires_at
    alice.open_sync = True
    with pytest.raises(OnboardingError) as err:
        redeem_invite(load_config(), me, encode_invite(blob), prompt=DefaultsPrompter())
    assert err.value.code == "invite_expired"


def test_a_back_dated_clock_does_not_beat_the_inviters_expiry(alice, me, tmp_path):
    """The joiner's own clock says the invite is still valid; the inviter's node, whose
    admission the join needs, says it expired."""
    ev = alice.invite(me.node_id_full, hours=-1)
    blob = sign_invite(alice.kp, community_id=alice.community_id, community_name="Maple Street",
                       invitee_node_id=me.node_id_full, initial_level="member",
                       bootstrap_endpoints=[{"transport": "https", "host": "127.0.0.1", "port": alice.port}],
                       expires_at=ev["data"]["expires_at"])
    alice.open_sync = True
    back_dated = parse_rfc3339(ev["data"]["expires_at"]) - timedelta(hours=1)
    with pytest.raises(OnboardingError) as err:
        redeem_invite(load_config(), me, encode_invite(blob), prompt=DefaultsPrompter(), now=back_dated)
    assert err.value.code == "invite_expired" and "/sync/v1/admit" in alice.seen
    assert "/sync/v1/events" not in alice.seen and not alice.log.view.is_member(me.node_id_full)
    assert load_config().community.community_id is None


def test_other_community_is_refused_before_any_contact(alice, me, tmp_path):
    cfg = load_config()
    mine = build_genesis_community_manifest(me, "My street")
    update_config_file(cfg.paths.config_file, {"community": {"community_id": me.node_id_full, "name": "My street"}})
    write_community_manifest(mine, load_config().community_manifest_path)
    with pytest.raises(OnboardingError) as err:
        redeem_invite(load_config(), me, encode_invite(blob_for(alice, me.node_id_full)), prompt=Answer(True))
    assert err.value.code == "other_community" and err.value.exit_code == 1
    assert alice.seen == []


def test_expired_invite(alice, me):
    blob = blob_for(alice, me.node_id_full, expires_at="2020-01-01T00:00:00Z")
    with pytest.raises(OnboardingError) as err:
        redeem_invite(load_config(), me, encode_invite(blob), prompt=Answer(True))
    assert err.value.code == "invite_expired"


def test_invite_from_file_and_png(alice, me, tmp_path):
    text = encode_invite(blob_for(alice, me.node_id_full))
    (tmp_path / "invite.txt").write_text(f"\n{text}\n")
    assert load_invite_text(str(tmp_path / "invite.txt")) == text
    write_qr_png(text, tmp_path / "invite.png")
    assert load_invite_text(str(tmp_path / "invite.png")) == text
    assert load_invite_text(text) == text
    assert load_invite_text("hearthnet://v1/" + "A" * 2000).startswith("hearthnet://")
    (tmp_path / "bin").write_bytes(b"\xff\xfe\x00")
    with pytest.raises(OnboardingError):
        load_invite_text(str(tmp_path / "bin"))
    result = redeem_invite(load_config(), me, str(tmp_path / "invite.png"), prompt=DefaultsPrompter())
    assert result.changed
    cfg = tomllib.loads(load_config().paths.config_file.read_text())
    assert cfg["community"]["community_id"] == alice.community_id
