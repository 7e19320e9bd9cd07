"""`hearthnet invite create` (spec §6.3): record the invite in the community's log through
the running node and hand out the signed blob as text, terminal QR and PNG.

The node must be running: the invite is a `community.member.invited` event, and the
ledger worker is the only writer of the log (it also refuses an invite this node may not
make, e.g. `trusted` from a plain member). The blob itself is signed here with the device
key, which the CLI may read because it runs as the node's owner.

Idempotent per invitee: while an unused, unexpired invite for the same node and level is
in the log, a second `invite create` re-issues it (a fresh blob for the same event, same
expiry) instead of appending another event; a different level, or an expired or used
invite, gets a new event.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hearthnet.errors import HearthNetError
from hearthnet.identity.keys import short_node_id
from hearthnet.identity.manifest import parse_rfc3339, utcnow
from hearthnet.onboarding.errors import OnboardingError
from hearthnet.onboarding.invite import (
    DISPLAY_NAME_MAX,
    INVITE_LEVELS,
    MAX_ENDPOINTS,
    encode_invite,
    expiry_after,
    parse_invitee,
    sign_invite,
)

if TYPE_CHECKING:
    from hearthnet.cli.render import Output
    from hearthnet.config import Config
    from hearthnet.localapi import LocalApi

MAX_TTL_HOURS = 30 * 24
MIN_REISSUE_LEFT = timedelta(minutes=10)  # a pending invite closer to expiry is not re-issued
BOOTSTRAP_MAX = 3  # endpoints carried in the blob (keeps the QR code small)
_GOVERNANCE = ["community.member.invited", "community.member.joined", "community.member.revoked"]


@dataclass
class CreatedInvite:
    invite: str
    png: Path | None
    invitee_node_id: str
    invitee_display_name: str
    level: str
    expires_at: str
    community_id: str
    community_name: str
    event_id: str
    reissued: bool
    qr: str = field(default="", repr=False)

    def to_dict(self) -> dict[str, Any]:
        return {"invite": self.invite, "png": str(self.png) if self.png else None,
                "invitee_node_id": self.invitee_node_id, "expires_at": self.expires_at,
                "level": self.level, "community_id": self.community_id,
                "community_name": self.community_name, "event_id": self.event_id,
                "reissued": self.reissued}

    def human(self, out: "Output") -> None:
        who = self.invitee_display_name or short_node_id(self.invitee_node_id)
        what = "Re-issued the pending invite" if self.reissued else "Invite"
        out.echo(f"{what} for {who} ({short_node_id(self.invitee_node_id)}) to join "
                 f"{self.community_name!r} as {self.level}, valid until {self.expires_at}.")
        out.echo()
        out.echo(self.qr)
        out.echo()
        out.echo(self.invite)
        out.echo()
        if self.png is not None:
            out.echo(f"QR code saved to {self.png}")
        out.echo("On the invited device run:")
        out.echo(f"  hearthnet invite redeem '{self.invite}'")
        out.echo("(or `hearthnet init --join '…'` there if it has no node yet)")


def create_invite(
    cfg: "Config",
    *,
    node_id_text: str,
    level: str = "member",
    ttl_hours: float = 24.0,
    png: Path | None = None,
    display_name: str | None = None,
    write_png: bool = True,
    api: "LocalApi | None" = None,
    now: datetime | None = None,
) -> CreatedInvite:
    from hearthnet.identity import keys
    from hearthnet.localapi import LocalApi

    invitee, id_name = parse_invitee(node_id_text)
    _check_options(level, ttl_hours)
    community_id = cfg.community.community_id
    if community_id is None:
        raise HearthNetError("not_found", "this node has no community yet, so it cannot invite anyone",
                             hint="run `hearthnet init` first")
    kp = keys.load(cfg.identity.keys_dir)
    if invitee == kp.node_id_full:
        raise HearthNetError("usage", "--node-id is this node's own id; give the id of the device to invite")
    api = api or LocalApi.for_running_node(cfg.paths)
    endpoints = _bootstrap_endpoints(api, kp.node_id_full)
    at = now or utcnow()
    event, reissued = _invite_event(api, invitee, level, ttl_hours, (display_name or id_name)[:DISPLAY_NAME_MAX], at)
    blob = sign_invite(kp, community_id=community_id, community_name=_community_name(cfg),
                       invitee_node_id=invitee, initial_level=event["data"]["initial_level"],
                       bootstrap_endpoints=endpoints, expires_at=event["data"]["expires_at"])
    return _issue(blob, event, reissued, display_name or id_name or event["data"]["display_name"],
                  png, write_png)


def _check_options(level: str, ttl_hours: float) -> None:
    if level not in INVITE_LEVELS:
        raise HearthNetError("usage", f"--level must be one of {', '.join(INVITE_LEVELS)}")
    if not 0 < ttl_hours <= MAX_TTL_HOURS:
        raise HearthNetError("usage", f"--ttl must be more than 0 and at most {MAX_TTL_HOURS} hours")


def _issue(blob: Any, event: dict[str, Any], reissued: bool, name: str, png: Path | None,
           write_png: bool) -> CreatedInvite:
    from hearthnet.onboarding.qr import terminal_qr, write_qr_png

    text = encode_invite(blob)
    path = None
    if write_png:
        group = short_node_id(blob.invitee_node_id).removeprefix("ed25519:")[:9]
        path = write_qr_png(text, png or Path.cwd() / f"hearthnet-invite-{group}.png")
    return CreatedInvite(invite=text, png=path, invitee_node_id=blob.invitee_node_id,
                         invitee_display_name=name, level=blob.initial_level,
                         expires_at=blob.expires_at, community_id=blob.community_id,
                         community_name=blob.community_name, event_id=event["event_id"],
                         reissued=reissued, qr=terminal_qr(text))


def _bootstrap_endpoints(api: "LocalApi", our_node_id: str) -> list[dict[str, Any]]:
    """Where the invitee reaches us: the running node's own signed manifest, which lists
    exactly what the gateway advertises (`gateway.app.advertised_endpoints`)."""
    manifest = api.get("/manifest")
    if manifest.get("node_id") != our_node_id:
        raise HearthNetError("bad_response", "the running node answers with another node id than this "
                                             "device key; is it running from another data dir?")
    eps = [{"transport": "https", "host": e["host"], "port": e["port"]}
           for e in manifest.get("endpoints") or []
           if isinstance(e, dict) and e.get("transport") == "https" and isinstance(e.get("host"), str)
           and isinstance(e.get("port"), int)]
    if not eps:
        raise HearthNetError("not_found", "this node advertises no address other devices can reach",
                             hint="set transport.host in config.toml to this machine's LAN address "
                                  "(or 0.0.0.0) and restart the node")
    return eps[:min(BOOTSTRAP_MAX, MAX_ENDPOINTS)]


def _community_name(cfg: "Config") -> str:
    from hearthnet.identity.manifest import read_community_manifest

    path = cfg.community_manifest_path
    if path is not None and path.exists():
        return str(read_community_manifest(path)["name"])
    return cfg.community.name


def _ledger(api: "LocalApi", cap: str, inp: dict[str, Any]) -> dict[str, Any]:
    reply = api.call(cap, "1.0", {"params": {}, "input": inp})
    assert isinstance(reply, dict)
    return reply.get("output") or {}


def _invite_event(api: "LocalApi", invitee: str, level: str, ttl_hours: float, name: str,
                  at: datetime) -> tuple[dict[str, Any], bool]:
    """The pending invite event to re-issue, or a new one appended through the ledger."""
    events = _ledger(api, "community.log.events", {"event_types": _GOVERNANCE})["events"]
    if invitee in _members(events):
        raise OnboardingError("already_member", f"{short_node_id(invitee)} is already a member of this "
                                                "community; it needs no invite")
    pending = _pending_for(events, invitee, level, at)
    if pending is not None:
        return pending, True
    data = {"invitee_node_id": invitee, "display_name": name, "initial_level": level,
            "expires_at": expiry_after(ttl_hours, at)}
    out = _ledger(api, "community.log.append", {"event_type": "community.member.invited", "data": data})
    return out["event"], False


def _members(events: list[dict[str, Any]]) -> set[str]:
    joined = {ev["author"] for ev in events if ev["event_type"] == "community.member.joined"}
    revoked = {ev["data"].get("target_node_id") for ev in events if ev["event_type"] == "community.member.revoked"}
    return joined - revoked


def _pending_for(events: list[dict[str, Any]], invitee: str, level: str, at: datetime) -> dict[str, Any] | None:
    used = {ev["data"].get("invite_event_id") for ev in events if ev["event_type"] == "community.member.joined"}
    found = [ev for ev in events
             if ev["event_type"] == "community.member.invited" and ev["event_id"] not in used
             and ev["data"].get("invitee_node_id") == invitee and ev["data"].get("initial_level") == level
             and _expires(ev) - at >= MIN_REISSUE_LEFT]
    return max(found, key=_expires) if found else None


def _expires(ev: dict[str, Any]) -> datetime:
    try:
        return parse_rfc3339(ev["data"].get("expires_at"))
    except (ValueError, TypeError):
        return datetime.min.replace(tzinfo=utcnow().tzinfo)
