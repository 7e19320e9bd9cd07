"""`hearthnet member ls|revoke|promote|demote`: the community's members and their
governance, through the running node's governance worker (community.members.list,
community.revoke, community.promote, community.demote; see
hearthnet/services/governance.py and README "Members and governance")."""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

import click

from hearthnet.cli import boundary
from hearthnet.cli.render import Output

if TYPE_CHECKING:
    from hearthnet.cli.state import CliState

REASONS = ("compromised", "inactive", "policy_violation", "other")
LEVELS = ("member", "trusted", "anchor")
Confirm = Callable[[str], bool]


# --------------------------------------------------------------------------- results


@dataclass
class MemberList:
    doc: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        keys = ("community_id", "community_name", "node_id", "members", "revoked", "pending_invites",
                "policy", "approvals")
        return {k: self.doc.get(k) for k in keys}

    def human(self, out: Output) -> None:
        d = self.to_dict()
        me = d["node_id"]
        out.echo(f"{d['community_name'] or 'community'} ({_short_of(d['community_id'])}): "
                 f"{len(d['members'] or [])} members")
        out.table(["", "node", "name", "level", "added", "added by"],
                  [["*" if m["node_id"] == me else "", m["node_id_short"], m.get("display_name") or "",
                    m["level"], m.get("added_at") or "", _short_of(m.get("added_by"))]
                   for m in d["members"] or []])
        if d["revoked"]:
            out.echo()
            out.table(["revoked", "name", "at", "by"],
                      [[r["node_id_short"], r.get("display_name") or "", r.get("revoked_at") or "",
                        _short_of(r.get("revoked_by"))] for r in d["revoked"]])
        if d["pending_invites"]:
            out.echo()
            out.table(["invited", "name", "level", "expires", "by"],
                      [[_short_of(i["invitee_node_id"]), i.get("display_name") or "", i["level"],
                        i["expires_at"], _short_of(i.get("invited_by"))] for i in d["pending_invites"]])
        if d["approvals"]:
            out.echo()
            out.table(["you approved", "target", "until"],
                      [[a["action"], _short_of(a["target_node_id"]), a["expires_at"]] for a in d["approvals"]])
        p = d["policy"] or {}
        out.echo()
        out.echo(f"Signatures needed: revoke {p.get('revoke')}, demote {p.get('demote')}, "
                 f"promote {p.get('promote')}, invite {p.get('invite')}; members may invite: "
                 f"{'yes' if p.get('default_member_can_invite') else 'no'}")


@dataclass
class ChangeResult:
    """The outcome of revoke/promote/demote on this node (status done or pending)."""

    doc: dict[str, Any]
    display_name: str = ""

    def to_dict(self) -> dict[str, Any]:
        keys = ("status", "action", "target_node_id", "event_id", "signers", "signatures", "needed",
                "waiting_for", "refused")
        d = {k: self.doc.get(k) for k in keys}
        d["waiting_for"] = d["waiting_for"] or []
        d["refused"] = d["refused"] or []
        return d

    def human(self, out: Output) -> None:
        d = self.to_dict()
        who = _who(d["target_node_id"], self.display_name)
        if d["status"] != "pending":
            out.echo(f"{who} {d['status']} (event {d['event_id']}, {d['signatures']} of {d['needed']} "
                     f"signatures).")
            return
        out.echo(f"You approved {d['action']} {who}; {d['signatures']} of {d['needed']} signatures so far.")
        why = {r["node_id"]: r.get("message") or r.get("error") for r in d["refused"]}
        for node_id in d["waiting_for"]:
            out.echo(f"  waiting for {_short_of(node_id)}: {why.get(node_id) or 'no answer'}")
        out.echo("Each of their owners runs the same command on their node; the one that completes "
                 "the signatures records the change. Your approval holds for 7 days.")


def _short_of(node_id: Any) -> str:
    from hearthnet.errors import IdentityError
    from hearthnet.identity.keys import short_node_id

    try:
        return short_node_id(node_id) if node_id else ""
    except IdentityError:
        return str(node_id)


def _who(node_id: str, name: str) -> str:
    return f"{name} ({_short_of(node_id)})" if name else _short_of(node_id)


# --------------------------------------------------------------------------- logic




def list_members(state: "CliState") -> MemberList:
    return MemberList(state.api().output("community.members.list", {}))


def resolve(listing: dict[str, Any], text: str) -> dict[str, Any]:
    """A member by full id, short id (with or without `ed25519:` and dashes, any case,
    or a unique prefix of at least 4 characters) or exact display name."""
    from hearthnet.errors import HearthNetError

    text = text.strip()
    members, revoked = listing.get("members") or [], listing.get("revoked") or []
    exact = [m for m in members if m["node_id"] == text]
    if exact:
        return exact[0]
    key = _squash(text)
    found = [m for m in members if len(key) >= 4 and _squash(m["node_id_short"]).startswith(key)]
    found = found or [m for m in members if (m.get("display_name") or "").casefold() == text.casefold()]
    if len(found) == 1:
        return found[0]
    if len(found) > 1:
        raise HearthNetError("usage", f"{text!r} matches {len(found)} members; give more of the id",
                             hint="`hearthnet member ls` lists them")
    gone = [r for r in revoked
            if r["node_id"] == text or (len(key) >= 4 and _squash(r["node_id_short"]).startswith(key))]
    if gone:
        raise HearthNetError("not_found", f"{gone[0]['node_id_short']} is not a member: it was revoked at "
                                          f"{gone[0].get('revoked_at')}")
    raise HearthNetError("not_found", f"{text!r} is not a member of this community",
                         hint="`hearthnet member ls` lists the members")


def _squash(text: str) -> str:
    return text.strip().removeprefix("ed25519:").replace("-", "").upper()


def change(state: "CliState", action: str, node: str, *, yes: bool, confirm: Confirm,
           reason: str | None = None, level: str | None = None) -> ChangeResult:
    from hearthnet.errors import UserAbort

    api = state.api()
    listing = api.output("community.members.list", {})
    target = resolve(listing, node)
    name = target.get("display_name") or ""
    what = {"revoke": f"Revoke {_who(target['node_id'], name)} (reason: {reason})",
            "promote": f"Promote {_who(target['node_id'], name)} from {target['level']}"
                       f"{' to ' + level if level else ''}",
            "demote": f"Demote {_who(target['node_id'], name)} from {target['level']}"
                      f"{' to ' + level if level else ''}"}[action]
    if not yes and not confirm(f"{what}? Other trusted members' nodes will be asked to co-sign."):
        raise UserAbort("user_abort", "nothing was changed")
    inp: dict[str, Any] = {"target_node_id": target["node_id"]}
    if reason is not None:
        inp["reason"] = reason
    if level is not None:
        inp["new_level"] = level
    return ChangeResult(api.output(f"community.{action}", inp), name)


class _Confirm:
    """Asks on stderr (stdout keeps the result, so --json stays parseable); end of input
    is a no."""

    def __init__(self, out: Output) -> None:
        self.out = out

    def __call__(self, text: str) -> bool:
        from rich.prompt import Confirm as RichConfirm

        try:
            return RichConfirm.ask(self.out.text(text), console=self.out.err_console, default=False)
        except EOFError:
            return False


# --------------------------------------------------------------------------- commands


@click.group("member")
def cli() -> None:
    """The community's members: list them, revoke, promote or demote one."""


@cli.command("ls")
@click.option("--json", "as_json", is_flag=True,
              help="Print {community_id, community_name, node_id, members, revoked, pending_invites, "
                   "policy, approvals}.")
@click.pass_obj
def ls_cmd(state: "CliState", as_json: bool) -> None:
    """List members (level, added when and by whom), revoked nodes, pending invites, your
    pending approvals and the signatures each change needs. The node must be running."""
    boundary.run(lambda: list_members(state), as_json=as_json, state=state)


_NODE_HELP = "NODE is a full node id, a short id (or a unique prefix of it) or a display name."
_EXITS = ("Exit 0 when done or pending, 1 if NODE is not a member, 2 for bad usage or a no at the "
          "prompt, 3 if no node runs, 4 if this node may not do it.")


def _run_change(state: "CliState", action: str, node: str, yes: bool, as_json: bool, **kw: Any) -> None:
    out = Output()
    boundary.run(lambda: change(state, action, node, yes=yes, confirm=_Confirm(out), **kw),
                 as_json=as_json, state=state, out=out)


@cli.command("revoke", help=f"""Revoke NODE from the community (needs the policy's number of
trusted signatures; your node asks the other trusted members' nodes, which sign only if
their owners approved the same revocation). {_NODE_HELP} {_EXITS}""")
@click.argument("node")
@click.option("--reason", type=click.Choice(REASONS), required=True, help="Why (recorded in the event).")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@click.option("--json", "as_json", is_flag=True,
              help="Print {status, action, target_node_id, event_id, signers, signatures, needed, "
                   "waiting_for, refused}.")
@click.pass_obj
def revoke_cmd(state: "CliState", node: str, reason: str, yes: bool, as_json: bool) -> None:
    _run_change(state, "revoke", node, yes, as_json, reason=reason)


@cli.command("promote", help=f"""Promote NODE one level up (member -> trusted -> anchor), or to
--level. One trusted signature (yours) is enough. {_NODE_HELP} {_EXITS}""")
@click.argument("node")
@click.option("--level", type=click.Choice(LEVELS), help="The new level (default: one up).")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@click.option("--json", "as_json", is_flag=True, help="Print the outcome (same keys as revoke).")
@click.pass_obj
def promote_cmd(state: "CliState", node: str, level: str | None, yes: bool, as_json: bool) -> None:
    _run_change(state, "promote", node, yes, as_json, level=level)


@cli.command("demote", help=f"""Demote NODE one level down, or to --level (needs the policy's
number of trusted signatures, collected like revoke). {_NODE_HELP} {_EXITS}""")
@click.argument("node")
@click.option("--level", type=click.Choice(LEVELS), help="The new level (default: one down).")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@click.option("--json", "as_json", is_flag=True, help="Print the outcome (same keys as revoke).")
@click.pass_obj
def demote_cmd(state: "CliState", node: str, level: str | None, yes: bool, as_json: bool) -> None:
    _run_change(state, "demote", node, yes, as_json, level=level)
