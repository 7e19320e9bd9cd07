"""Joining another community from a RUNNING node (the UI's Settings tab, through the local
API's `POST /api/v1/community/join`; the routes are in hearthnet/gateway/node_settings.py).

`hearthnet init` founds a one-member community, so a node started by `scripts/node` is
already "in a community" and `invite redeem` would refuse it (`other_community`). A node
whose community is SOLO — it is the only member and no other node's event is in its log —
has nothing to lose by switching: it redeems the invite exactly as `invite redeem` does
(hearthnet.onboarding.join.redeem_invite: pull the log, admission, our joined event, the
new community's state dir, community_id in config.toml last) on a copy of its config with
the community cleared. The old community's directory stays on disk, untouched; the node
must then restart so every worker reads the new community (the gateway does that).
"""
from __future__ import annotations

import asyncio
import dataclasses
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Mapping

from hearthnet.identity.keys import KeyPair, short_node_id
from hearthnet.onboarding.errors import OnboardingError
from hearthnet.onboarding.invite import InviteBlob, check_invite, decode_invite

if TYPE_CHECKING:
    from hearthnet.config import Config
    from hearthnet.onboarding.join import JoinResult

MAX_INVITE_CHARS = 16 * 1024  # a packed invite is ~250 characters, its JSON form ~1 KiB
ERASE_HINT = ("only a node alone in its own community can switch from here; to leave a shared "
              "community use `hearthnet erase` first (it deletes this node's data), or another device")


@dataclass(frozen=True)
class Preview:
    """What joining would mean, shown before the owner confirms."""

    community_id: str
    community_name: str
    inviter_node_id: str
    inviter_display_name: str
    level: str
    expires_at: str
    members: int
    bootstrap: str
    same_community: bool  # the invite is for the community this node is in already

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "community_id_short": short_node_id(self.community_id),
                "inviter_node_id_short": short_node_id(self.inviter_node_id)}


def parse_invite(text: Any) -> InviteBlob:
    """The pasted text's invite, signature checked. Only text: a path on the node's disk
    is not something a web page may name."""
    if not isinstance(text, str) or not text.strip():
        raise OnboardingError("invite_invalid", "paste an invite first (it starts with hearthnet://)")
    if len(text) > MAX_INVITE_CHARS:
        raise OnboardingError("invite_invalid", f"that is over {MAX_INVITE_CHARS} characters: not an invite")
    return decode_invite(text.strip())


def preview_invite(cfg: "Config", kp: KeyPair, text: str, now: datetime | None = None) -> Preview:
    """Decode and check the invite (signature, addressee, expiry), then reach the inviter's
    node and verify the community manifest it serves, as `invite redeem` does before it
    asks. Nothing is written. Blocking (runs its own event loop): call it in a thread."""
    blob = parse_invite(text)
    check_invite(blob, kp.node_id_full, now)
    contact = asyncio.run(_reach(cfg, kp, blob))
    m = contact.community_manifest
    return Preview(
        community_id=blob.community_id, community_name=str(m.get("name") or blob.community_name),
        inviter_node_id=blob.inviter_node_id,
        inviter_display_name=str(contact.node_manifest.get("display_name") or ""),
        level=blob.initial_level, expires_at=blob.expires_at, members=len(m.get("members") or []),
        bootstrap=contact.address, same_community=blob.community_id == cfg.community.community_id)


async def _reach(cfg: "Config", kp: KeyPair, blob: InviteBlob) -> Any:
    from hearthnet.onboarding.join import _memory_pins, _reach as reach_inviter
    from hearthnet.transport.client import PeerClient

    async with PeerClient(kp, blob.community_id, _memory_pins(cfg)) as client:
        return await reach_inviter(client, blob)


def solo_problem(node_id: str, members: Mapping[str, Any], authors: Iterable[str]) -> str | None:
    """None when this node's community is solo: it is the only member (none revoked either)
    and every event of the log is its own; else why not, for the owner."""
    ids = [m.get("node_id") for m in members.get("members") or [] if isinstance(m, dict)]
    if ids != [node_id]:
        others = len([i for i in ids if i != node_id])
        return f"this node's community has {others} other member(s)"
    if members.get("revoked"):
        return "this node's community has had other members (revoked ones)"
    strangers = {a for a in authors if a != node_id}
    if strangers:
        return f"this node's event log holds events of {len(strangers)} other node(s)"
    return None


def has_custom_state_dir(cfg: "Config") -> bool:
    """True when config.toml names community.state_dir itself: the joined community would
    land in the old one's directory, so switching from the page is refused."""
    from hearthnet.config import community_state_dir

    cid, sd = cfg.community.community_id, cfg.community.state_dir
    return sd is not None and cid is not None and Path(sd) != community_state_dir(cfg.paths, cid)


def without_community(cfg: "Config") -> "Config":
    """`cfg` as a node that has no community yet: what redeem_invite expects."""
    return dataclasses.replace(cfg, community=dataclasses.replace(
        cfg.community, community_id=None, name="", state_dir=None))


def join_from_solo(cfg: "Config", kp: KeyPair, text: str, now: datetime | None = None) -> "JoinResult":
    """Redeem the invite for a node whose (solo) community it leaves; the caller checked
    solo_problem. Blocking (asyncio.run inside): call it in a thread. The preview is not
    asked again: the owner confirmed the one preview_invite gave."""
    from hearthnet.node_init import DefaultsPrompter  # confirm(text, True) -> True
    from hearthnet.onboarding.join import redeem_invite

    parse_invite(text)  # text only, never a path
    return redeem_invite(without_community(cfg), kp, text.strip(), prompt=DefaultsPrompter(), now=now)
