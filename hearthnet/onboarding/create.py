"""`hearthnet invite create` (spec §6.3): ask the running node for an invite
(`community.invite@1.0`, served by the governance worker) and hand it out as text,
terminal QR and PNG.

The PNG goes where `--out` says, or else to `<community state dir>/invites/<invitee>.png`
(0600 in a 0700 directory, removed by `hearthnet erase` with the community): never into
whatever directory the owner happens to stand in.

The node must be running: the invite is a `community.member.invited` event, which the
node records through its ledger (refusing an invite this node may not make, e.g.
`trusted` from a plain member) before it signs the blob with the device key. Inviting
the same device at the same level while its invite is pending re-issues it (a fresh blob
for the same event and expiry); see hearthnet/services/governance.py. The PNG and the
terminal QR code are made here, on the owner's side.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hearthnet.errors import HearthNetError
from hearthnet.identity.keys import short_node_id
from hearthnet.onboarding.errors import OnboardingError
from hearthnet.onboarding.invite import DISPLAY_NAME_MAX, INVITE_LEVELS, parse_invitee

if TYPE_CHECKING:
    from hearthnet.cli.render import Output
    from hearthnet.config import Config
    from hearthnet.localapi import LocalApi

MAX_TTL_HOURS = 30 * 24
INVITES_DIR = "invites"


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
            out.echo(f"QR code saved to {self.png} (only you can read it; --out PNG puts it elsewhere)")
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
) -> CreatedInvite:
    from hearthnet.identity import keys
    from hearthnet.localapi import LocalApi

    invitee, id_name = parse_invitee(node_id_text)
    _check_options(level, ttl_hours)
    if cfg.community.community_id is None:
        raise HearthNetError("not_found", "this node has no community yet, so it cannot invite anyone",
                             hint="run `hearthnet init` first")
    if invitee == keys.own_node_id(cfg.identity.keys_dir):
        raise HearthNetError("usage", "--node-id is this node's own id; give the id of the device to invite")
    api = api or LocalApi.for_running_node(cfg.paths)
    name = (display_name or id_name)[:DISPLAY_NAME_MAX]
    inp: dict[str, Any] = {"invitee_node_id": invitee, "level": level,
                           "ttl_seconds": max(1, round(ttl_hours * 3600))}
    if name:
        inp["display_name"] = name
    made = _ask_node(api, inp)
    if write_png and png is None:
        png = default_png(cfg, made["invitee_node_id"])
    return _issue(made, display_name or id_name or made.get("invitee_display_name") or "", png if write_png else None)


def default_png(cfg: "Config", invitee_node_id: str) -> Path:
    """`<community state dir>/invites/<first 8 characters of the short id>.png`, its
    directory made private (0700) first."""
    from hearthnet.config import community_state_dir
    from hearthnet.paths import ensure_private_dir

    state_dir = cfg.community.state_dir or community_state_dir(cfg.paths, str(cfg.community.community_id))
    group = short_node_id(invitee_node_id).removeprefix("ed25519:")[:9]
    return ensure_private_dir(state_dir / INVITES_DIR) / f"{group}.png"


def _check_options(level: str, ttl_hours: float) -> None:
    if level not in INVITE_LEVELS:
        raise HearthNetError("usage", f"--level must be one of {', '.join(INVITE_LEVELS)}")
    if not 0 < ttl_hours <= MAX_TTL_HOURS:
        raise HearthNetError("usage", f"--ttl must be more than 0 and at most {MAX_TTL_HOURS} hours")


def _ask_node(api: "LocalApi", inp: dict[str, Any]) -> dict[str, Any]:
    try:
        reply = api.call("community.invite", "1.0", {"params": {}, "input": inp})
    except HearthNetError as exc:
        if exc.details.get("reason") == "already_member":  # the wire says bad_request; we say why
            raise OnboardingError("already_member", exc.message) from None
        raise
    out = reply.get("output") if isinstance(reply, dict) else None
    if not isinstance(out, dict) or not isinstance(out.get("invite"), str):
        raise HearthNetError("bad_response", "the node's community.invite answer holds no invite")
    return out


def _issue(made: dict[str, Any], name: str, png: Path | None) -> CreatedInvite:
    from hearthnet.onboarding.qr import terminal_qr, write_qr_png

    text = made["invite"]
    path = write_qr_png(text, png, mode=0o600) if png is not None else None
    return CreatedInvite(invite=text, png=path, invitee_node_id=made["invitee_node_id"],
                         invitee_display_name=name, level=made["level"], expires_at=made["expires_at"],
                         community_id=made["community_id"], community_name=made["community_name"],
                         event_id=made["event_id"], reissued=bool(made["reissued"]), qr=terminal_qr(text))
