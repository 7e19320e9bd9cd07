"""`create_invite` against a stand-in for the running node's local API that is backed by a
real EventLog (so the ledger's own rules judge the invite events)."""
from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from hearthnet.config import load_config, update_config_file
from hearthnet.errors import HearthNetError
from hearthnet.identity import keys
from hearthnet.identity.keys import KeyPair
from hearthnet.identity.manifest import build_genesis_community_manifest, utcnow, write_community_manifest
from hearthnet.ledger.events import build_admission
from hearthnet.ledger.store import EventLog
from hearthnet.bus.service import Request
from hearthnet.onboarding.create import create_invite
from hearthnet.services.governance import GovernanceService
from hearthnet.onboarding.errors import OnboardingError
from hearthnet.onboarding.invite import decode_invite, encode_node_id_text
from hearthnet.onboarding.qr import read_qr_png
from tests.unit.onboarding.conftest import NOW

ENDPOINT = {"transport": "https", "host": "192.168.1.20", "port": 7080}


class NodeApi:
    """What create_invite asks of LocalApi: `community.invite`, answered by a real
    GovernanceService whose bus serves the ledger capabilities from a real EventLog."""

    def __init__(self, cfg: Any, kp: KeyPair, log: EventLog, endpoints: list[dict[str, Any]]) -> None:
        self.kp, self.log, self.endpoints = kp, log, endpoints
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.now = NOW
        self.service = GovernanceService(kp.node_id_full, kp, cfg.community.state_dir, self,
                                         endpoints=lambda: self.endpoints, clock=lambda: self.now)

    def call(self, name: str, version: str, body: dict[str, Any]) -> dict[str, Any]:
        assert name == "community.invite"
        req = Request(capability=name, version=version, body=body, caller=self.kp.node_id_full)
        return asyncio.run(self.service.invite(req))

    async def bus_call(self, cap: str, version: str, body: dict[str, Any], **kw: Any) -> dict[str, Any]:
        inp = body["input"]
        self.calls.append((cap, inp))
        if cap == "community.log.events":
            return {"output": {"events": self.log.events(event_types=inp.get("event_types"))}}
        if cap == "community.log.append":
            return {"output": {"event": self.log.append_local(self.kp, inp["event_type"], inp["data"])}}
        if cap == "community.members.get":
            return {"output": self.log.view.manifest_body()}
        raise AssertionError(cap)


class _Bus:
    def __init__(self, api: NodeApi) -> None:
        self.api = api

    async def call(self, *args: Any, **kw: Any) -> dict[str, Any]:
        return await self.api.bus_call(*args, **kw)


@pytest.fixture
def node(tmp_path: Path) -> Any:
    cfg = load_config()
    kp = keys.load_or_generate(cfg.identity.keys_dir)
    manifest = build_genesis_community_manifest(kp, "Maple Street", now=NOW)
    update_config_file(cfg.paths.config_file, {"community": {"community_id": kp.node_id_full, "name": "Maple Street"}})
    cfg = load_config()
    write_community_manifest(manifest, cfg.community_manifest_path)
    log = EventLog(cfg.community.state_dir / "events.sqlite", kp.node_id_full)
    log.create_genesis(kp, "Maple Street", display_name="alice", now=NOW)
    api = NodeApi(cfg, kp, log, [ENDPOINT, {"transport": "http", "host": "x", "port": 1}])
    api.service.bus = _Bus(api)
    yield cfg, kp, log, api
    log.close()


def test_invite_is_recorded_and_issued(node, tmp_path, monkeypatch):
    cfg, kp, log, api = node
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    bob = keys.generate()
    made = create_invite(cfg, node_id_text=encode_node_id_text(bob.node_id_full, "Bob's laptop"),
                         level="member", ttl_hours=1, api=api)
    event = log.get(made.event_id)
    assert event["event_type"] == "community.member.invited" and event["author"] == kp.node_id_full
    assert event["data"] == {"invitee_node_id": bob.node_id_full, "display_name": "Bob's laptop",
                             "initial_level": "member", "expires_at": "2026-05-26T09:00:00Z"}
    blob = decode_invite(made.invite)
    assert (blob.community_id, blob.community_name, blob.inviter_node_id) == (kp.node_id_full, "Maple Street",
                                                                              kp.node_id_full)
    assert blob.invitee_node_id == bob.node_id_full and blob.expires_at == "2026-05-26T09:00:00Z"
    assert list(blob.bootstrap_endpoints) == [ENDPOINT]  # https only, from the running node's manifest
    short = bob.node_id_short.removeprefix("ed25519:")[:9]
    # not where the owner stands: in the community's state dir, private
    assert list(cwd.iterdir()) == []
    invites = cfg.community.state_dir / "invites"
    assert made.png == invites / f"{short}.png" and read_qr_png(made.png) == made.invite
    assert (invites.stat().st_mode & 0o777, made.png.stat().st_mode & 0o777) == (0o700, 0o600)
    assert set(made.to_dict()) >= {"invite", "png", "invitee_node_id", "expires_at", "level"}
    assert made.qr.count("\n") > 10


def test_second_invite_for_the_same_node_is_reissued(node, tmp_path):
    cfg, kp, log, api = node
    bob = keys.generate().node_id_full
    first = create_invite(cfg, node_id_text=bob, ttl_hours=2, png=tmp_path / "1.png", api=api)
    assert first.png == tmp_path / "1.png" and first.png.stat().st_mode & 0o777 == 0o600  # --out: there
    api.now = NOW + timedelta(minutes=30)
    again = create_invite(cfg, node_id_text=bob, ttl_hours=2, png=tmp_path / "2.png", api=api)
    assert again.reissued and again.event_id == first.event_id and again.expires_at == first.expires_at
    assert decode_invite(again.invite).invitee_node_id == bob
    # another level is another invite
    trusted = create_invite(cfg, node_id_text=bob, level="trusted", ttl_hours=2, png=tmp_path / "3.png",
                            api=api)
    assert not trusted.reissued and trusted.event_id != first.event_id and trusted.level == "trusted"
    # one that is about to expire is not handed out again
    api.now = NOW + timedelta(hours=1, minutes=55)
    late = create_invite(cfg, node_id_text=bob, ttl_hours=2, png=tmp_path / "4.png", api=api)
    assert not late.reissued
    appended = [c for c in api.calls if c[0] == "community.log.append"]
    assert len(appended) == 3


def test_member_needs_no_invite(node, tmp_path):
    cfg, kp, log, api = node
    with pytest.raises(HearthNetError) as err:
        create_invite(cfg, node_id_text=kp.node_id_full, api=api, write_png=False)
    assert err.value.code == "usage"  # our own id
    bob = keys.generate()
    api.now = utcnow()  # bob joins now
    made = create_invite(cfg, node_id_text=bob.node_id_full, api=api, write_png=False)
    log.append_local(bob, "community.member.joined", {"invite_event_id": made.event_id,
                                                      "node_manifest": {"node_id": bob.node_id_full},
                                                      "admission": build_admission(kp, made.event_id, bob.node_id_full)})
    with pytest.raises(OnboardingError) as err:
        create_invite(cfg, node_id_text=bob.node_id_full, api=api, write_png=False)
    assert err.value.code == "already_member" and err.value.exit_code == 1


@pytest.mark.parametrize("over, code", [
    ({"level": "anchor"}, "usage"), ({"ttl_hours": 0}, "usage"), ({"ttl_hours": 10_000}, "usage"),
    ({"node_id_text": "bob"}, "usage"),
])
def test_bad_options_are_usage_errors(node, over, code):
    cfg, kp, log, api = node
    args = {"node_id_text": keys.generate().node_id_full, "api": api, "write_png": False, **over}
    with pytest.raises(HearthNetError) as err:
        create_invite(cfg, **args)
    assert err.value.code == code and err.value.exit_code == 2
    assert not [c for c in api.calls if c[0] == "community.log.append"]


def test_node_that_advertises_no_address_cannot_invite(node):
    cfg, kp, log, api = node
    api.endpoints = []
    with pytest.raises(HearthNetError, match="no address") as err:
        create_invite(cfg, node_id_text=keys.generate().node_id_full, api=api, write_png=False)
    assert "transport.host" in err.value.details["hint"]


def test_invite_before_init_is_refused():
    with pytest.raises(HearthNetError, match="hearthnet init|no community") as err:
        create_invite(load_config(), node_id_text=keys.generate().node_id_full, write_png=False)
    assert err.value.code == "not_found"
