"""`hearthnet chat send|ls|unread`: direct messages through the running node's chat worker
(chat.send, chat.history, chat.read, chat.unread; see hearthnet/services/chat/ and README
"Direct chat").

NODE_OR_NAME is a member's full node id, its short id (or a unique prefix of 4+
characters, with or without `ed25519:` and dashes) or its display name, resolved against
the community's member list (`community.members.list`). A name two members share is
refused with the choices (exit 2); no such member is `not_found` (exit 1)."""
from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import click

from hearthnet.cli import boundary
from hearthnet.cli.render import Output, short_node_id

if TYPE_CHECKING:
    from hearthnet.cli.state import CliState
    from hearthnet.localapi import LocalApi



# --------------------------------------------------------------------------- names


def _squash(text: str) -> str:
    return text.strip().removeprefix("ed25519:").replace("-", "").upper()


def resolve(members: list[dict[str, Any]], text: str) -> dict[str, Any]:
    """The one member `text` names: full id, short id or its unique prefix, or display
    name (case-insensitive)."""
    from hearthnet.errors import HearthNetError

    text = text.strip()
    exact = [m for m in members if m.get("node_id") == text]
    if exact:
        return exact[0]
    key = _squash(text)
    found = [m for m in members if len(key) >= 4 and _squash(str(m.get("node_id_short", ""))).startswith(key)]
    found = found or [m for m in members if (m.get("display_name") or "").casefold() == text.casefold()]
    if len(found) == 1:
        return found[0]
    if found:
        choices = ", ".join(f"{m.get('display_name') or '?'} ({m.get('node_id_short')})" for m in found)
        raise HearthNetError("usage", f"{text!r} names {len(found)} members: {choices}",
                             hint="give the short id of the one you mean")
    raise HearthNetError("not_found", f"{text!r} is not a member of this community",
                         hint="`hearthnet member ls` lists the members")


def _members(api: "LocalApi") -> tuple[list[dict[str, Any]], str]:
    listing = api.output("community.members.list", {})
    return [m for m in listing.get("members") or [] if isinstance(m, dict)], str(listing.get("node_id") or "")


def _names(members: list[dict[str, Any]]) -> dict[str, str]:
    return {m["node_id"]: m.get("display_name") or "" for m in members if isinstance(m.get("node_id"), str)}


def _who(node_id: str, names: dict[str, str]) -> str:
    name = names.get(node_id)
    return f"{name} ({short_node_id(node_id)})" if name else short_node_id(node_id)


# --------------------------------------------------------------------------- send


@dataclass
class SendResult:
    doc: dict[str, Any]
    to: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {"event_id": self.doc.get("event_id"), "lamport": self.doc.get("lamport"),
                "delivered": self.doc.get("delivered"), "to": self.to.get("node_id"),
                "to_name": self.to.get("display_name") or None}

    def human(self, out: Output) -> None:
        d = self.to_dict()
        who = _who(d["to"], {d["to"]: d["to_name"] or ""})
        how = ("delivered to their node" if d["delivered"] == "direct"
               else "queued: neighbours' nodes carry it until theirs is back")
        out.echo(f"Sent to {who}, {how}.")


def send(state: "CliState", node: str, text: str, attach: tuple[str, ...]) -> SendResult:
    api = state.api()
    members, _me = _members(api)
    target = resolve(members, node)
    inp = {"client_id": uuid.uuid4().hex, "recipient": target["node_id"], "body": text,
           "attachments": [{"cid": cid, "name": ""} for cid in attach]}
    return SendResult(api.output("chat.send", inp), target)


# --------------------------------------------------------------------------- ls


@dataclass
class ListResult:
    messages: list[dict[str, Any]]
    names: dict[str, str]
    marked: int

    def to_dict(self) -> dict[str, Any]:
        return {"messages": self.messages, "marked_read": self.marked}

    def human(self, out: Output) -> None:
        if not self.messages:
            out.echo("No messages.")
            return
        peer = None
        for m in self.messages:
            other = m["to"] if m["direction"] == "out" else m["from"]
            if other != peer:
                peer = other
                out.echo(("\n" if m is not self.messages[0] else "") + f"— {_who(other, self.names)} —")
            who = "you" if m["direction"] == "out" else (self.names.get(m["from"]) or short_node_id(m["from"]))
            body = m["body"] if m["decrypted"] else "[cannot be decrypted]"
            ticks = ""
            if m["direction"] == "out":
                ticks = " ✓✓ read" if m["read_at"] else (" ✓ delivered" if m["delivered_at"] else " (queued)")
            files = "".join(f"\n    📎 {a['cid']} {a.get('name') or ''}".rstrip() for a in m["attachments"])
            out.echo(f"[{m['created_at']}] {who}: {body}{ticks}{files}")
        if self.marked:
            out.echo(f"\n{self.marked} marked read.")


def ls(state: "CliState", peer: str | None, limit: int) -> ListResult:
    api = state.api()
    members, _me = _members(api)
    inp: dict[str, Any] = {"limit": limit}
    if peer is not None:
        inp["peer"] = resolve(members, peer)["node_id"]
    messages = api.output("chat.history", inp).get("messages") or []
    messages.sort(key=lambda m: ((m["to"] if m["direction"] == "out" else m["from"]), m["lamport"], m["event_id"]))
    shown = [m["event_id"] for m in messages if m["direction"] == "in" and not m.get("read_at")]
    marked = api.output("chat.read", {"event_ids": shown})["marked"] if shown else 0
    return ListResult(messages, _names(members), marked)


# --------------------------------------------------------------------------- unread


@dataclass
class UnreadResult:
    doc: dict[str, Any]
    names: dict[str, str]

    def to_dict(self) -> dict[str, Any]:
        return {"unread": [{**u, "name": self.names.get(u["peer"]) or None} for u in self.doc.get("unread") or []],
                "total": self.doc.get("total", 0)}

    def human(self, out: Output) -> None:
        d = self.to_dict()
        if not d["total"]:
            out.echo("No unread messages.")
            return
        out.table(["from", "unread"], [[_who(u["peer"], self.names), u["count"]] for u in d["unread"]])


def unread(state: "CliState") -> UnreadResult:
    api = state.api()
    members, _me = _members(api)
    return UnreadResult(api.output("chat.unread", {}), _names(members))


# --------------------------------------------------------------------------- commands


@click.group("chat")
def cli() -> None:
    """Private messages to other members, end-to-end encrypted; carried by neighbours'
    nodes while the recipient is offline."""


@cli.command("send")
@click.argument("node")
@click.argument("text")
@click.option("--attach", multiple=True, metavar="CID", help="A file CID (from `file add`) to attach; repeatable.")
@click.option("--json", "as_json", is_flag=True, help="Print {event_id, lamport, delivered, to, to_name}.")
@click.pass_obj
def send_cmd(state: "CliState", node: str, text: str, attach: tuple[str, ...], as_json: bool) -> None:
    """Send TEXT to NODE (a node id, short id or display name). `delivered` is `direct`
    when their node took it now, else `queued`."""
    boundary.run(lambda: send(state, node, text, attach), as_json=as_json, state=state)


@cli.command("ls")
@click.option("--peer", help="Only the conversation with this member (id or name).")
@click.option("--limit", type=click.IntRange(1, 1000), default=200, show_default=True,
              help="At most this many (the newest).")
@click.option("--json", "as_json", is_flag=True,
              help="Print {messages: [{event_id, lamport, from, to, body, attachments, created_at, delivered_at, "
                   "read_at, direction, decrypted, encrypted}], marked_read}.")
@click.pass_obj
def ls_cmd(state: "CliState", peer: str | None, limit: int, as_json: bool) -> None:
    """Your conversations (or one), then mark the messages shown as read."""
    boundary.run(lambda: ls(state, peer, limit), as_json=as_json, state=state)


@cli.command("unread")
@click.option("--json", "as_json", is_flag=True, help="Print {unread: [{peer, name, count}], total}.")
@click.pass_obj
def unread_cmd(state: "CliState", as_json: bool) -> None:
    """Unread messages per member."""
    boundary.run(lambda: unread(state), as_json=as_json, state=state)
