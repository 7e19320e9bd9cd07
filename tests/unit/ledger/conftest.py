"""A founded community in a temp dir, and helpers that grow it the way peers would."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from hearthnet.identity import keys
from hearthnet.identity.keys import KeyPair
from hearthnet.identity.manifest import rfc3339
from hearthnet.ledger.events import build_admission, build_event, co_sign
from hearthnet.ledger.store import EventLog

NOW = datetime(2026, 11, 26, 12, 0, 0, tzinfo=timezone.utc)


def post_data(n: int = 0) -> dict[str, Any]:
    return {"client_id": f"c{n}", "category": "offer", "title": f"Ladder {n}", "body": "free",
            "location": {"lat": 51.5, "lng": 6.25, "label": "porch"}, "tags": ["tools"], "ttl_seconds": 3600}


def node_manifest_stub(kp: KeyPair) -> dict[str, Any]:
    return {"node_id": kp.node_id_full, "display_name": "n"}


@dataclass
class Community:
    """The founder's log plus helpers that author events as other nodes would."""

    log: EventLog
    root: KeyPair
    members: dict[str, KeyPair] = field(default_factory=dict)
    keyring: dict[str, KeyPair] = field(default_factory=dict)  # node id -> key, for admissions

    def __post_init__(self) -> None:
        self.keyring[self.root.node_id_full] = self.root

    @property
    def cid(self) -> str:
        return self.root.node_id_full

    def event(self, kp: KeyPair, event_type: str, data: dict[str, Any], lamport: int | None = None,
              now: datetime | None = None) -> dict[str, Any]:
        """An event authored elsewhere (not yet stored), by default just past our clock."""
        return build_event(kp, self.cid, lamport or self.log.clock + 1, event_type, data, now=now)

    def invite(self, inviter: KeyPair, invitee: KeyPair, level: str = "member",
               expires_at: datetime | None = None) -> dict[str, Any]:
        self.keyring[inviter.node_id_full] = inviter
        return self.log.append_local(inviter, "community.member.invited", {
            "invitee_node_id": invitee.node_id_full, "display_name": "new", "initial_level": level,
            "expires_at": rfc3339(expires_at or datetime.now(timezone.utc) + timedelta(hours=24))})

    def join_event(self, invitee: KeyPair, invite: dict[str, Any], now: datetime | None = None,
                   admitted_at: datetime | None = None, admitted_by: KeyPair | None = None,
                   lamport: int | None = None) -> dict[str, Any]:
        """A join with the admission the invite's author signs at `admitted_at` (default
        now); `now` is the joiner's own wall_clock."""
        by = admitted_by or self.keyring[invite["author"]]
        admission = build_admission(by, invite["event_id"], invitee.node_id_full,
                                    admitted_at or datetime.now(timezone.utc))
        return self.event(invitee, "community.member.joined",
                          {"invite_event_id": invite["event_id"], "node_manifest": node_manifest_stub(invitee),
                           "admission": admission}, now=now, lamport=lamport)

    def add_member(self, name: str, level: str = "member", inviter: KeyPair | None = None) -> KeyPair:
        kp = keys.generate()
        invite = self.invite(inviter or self.root, kp, level)
        result = self.log.append_received([self.join_event(kp, invite)])
        assert result.accepted == 1, result
        self.members[name] = kp
        self.keyring[kp.node_id_full] = kp
        return kp

    def governance(self, author: KeyPair, event_type: str, data: dict[str, Any],
                   co_signers: list[KeyPair], lamport: int | None = None) -> dict[str, Any]:
        """Co-signed; a revocation or demotion gets the frontier this log would give it
        now unless `data` names one."""
        data = {**data, "co_signers": []}
        action = {"community.member.revoked": "revoke", "community.member.demoted": "demote"}.get(event_type)
        if action and "frontier" not in data:
            data["frontier"] = self.log.frontier(data["target_node_id"], action)
        data["co_signers"] = [co_sign(kp, self.cid, event_type, data) for kp in co_signers]
        return self.event(author, event_type, data, lamport=lamport)


@pytest.fixture
def root() -> KeyPair:
    return keys.generate()


@pytest.fixture
def community(tmp_path: Path, root: KeyPair) -> Community:
    log = EventLog(tmp_path / "events.sqlite", root.node_id_full)
    log.create_genesis(root, "Maple Street", None, display_name="kitchen")
    yield Community(log, root)
    log.close()
