"""ChatView: this node's conversations, materialised from the `chat.message.*` events of
the log (spec §2.1). Only messages this node sent or received are kept; a neighbour's
message to someone else passes through our log (store-and-forward) but never into the
view, and we could not read it anyway.

The view is rebuilt from the log at every start (it is small: one node's messages), so it
has no snapshot. Decrypted bodies are kept in memory only.

The ledger has already checked each event (signature, membership, a receipt comes from
the message's recipient and points at a message in the log); the view checks the
receipt's author again, cheaply, because its counts depend on it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hearthnet.services.chat.crypto import ChatCrypto, Undecryptable

SENT = "chat.message.sent"
DELIVERED = "chat.message.delivered"
READ = "chat.message.read"
CHAT_TYPES = (SENT, DELIVERED, READ)
DEFAULT_LIMIT = 200


@dataclass
class ChatMessage:
    event_id: str
    lamport: int
    sender: str
    recipient: str
    client_id: str
    created_at: str
    body: str | None
    attachments: list[dict[str, str]]
    decrypted: bool
    encrypted: bool
    delivered_at: str | None = None
    read_at: str | None = None

    def to_wire(self, me: str) -> dict[str, Any]:
        return {"event_id": self.event_id, "lamport": self.lamport, "from": self.sender, "to": self.recipient,
                "body": self.body, "attachments": [dict(a) for a in self.attachments],
                "created_at": self.created_at, "delivered_at": self.delivered_at, "read_at": self.read_at,
                "direction": "out" if self.sender == me else "in", "decrypted": self.decrypted,
                "encrypted": self.encrypted}

    def peer(self, me: str) -> str:
        return self.recipient if self.sender == me else self.sender


@dataclass
class ChatView:
    crypto: ChatCrypto
    messages: dict[str, ChatMessage] = field(default_factory=dict)
    by_client_id: dict[str, str] = field(default_factory=dict)  # our own sends: client_id -> event_id

    @property
    def me(self) -> str:
        return self.crypto.node_id

    def reset(self) -> None:
        self.messages.clear()
        self.by_client_id.clear()

    # ------------------------------------------------------------------ applying events

    def apply(self, ev: dict[str, Any]) -> ChatMessage | None:
        """Apply one event (any type; others are ignored). Returns the message it added
        or changed, if it is one of ours. Applying an event twice changes nothing."""
        kind, data = ev.get("event_type"), ev.get("data")
        if kind not in CHAT_TYPES or not isinstance(data, dict) or not isinstance(ev.get("event_id"), str):
            return None
        if kind == SENT:
            return self._apply_sent(ev, data)
        return self._apply_receipt(ev, kind, data)

    def _apply_sent(self, ev: dict[str, Any], data: dict[str, Any]) -> ChatMessage | None:
        author, recipient = ev.get("author"), data.get("recipient")
        if self.me not in (author, recipient) or author == recipient or ev["event_id"] in self.messages:
            return self.messages.get(ev["event_id"])
        encrypted = "enc" in data
        try:
            plain = self.crypto.decrypt(ev) if encrypted else _clear(data)
            body, atts, ok = plain["body"], plain["attachments"], True
        except Undecryptable:
            body, atts, ok = None, [], False
        msg = ChatMessage(event_id=ev["event_id"], lamport=int(ev.get("lamport") or 0), sender=str(author),
                          recipient=str(recipient), client_id=str(data.get("client_id", "")),
                          created_at=str(ev.get("wall_clock", "")), body=body, attachments=atts,
                          decrypted=ok, encrypted=encrypted)
        self.messages[msg.event_id] = msg
        if msg.sender == self.me and msg.client_id:
            self.by_client_id.setdefault(msg.client_id, msg.event_id)
        return msg

    def _apply_receipt(self, ev: dict[str, Any], kind: str, data: dict[str, Any]) -> ChatMessage | None:
        target = data.get("target_event_id")
        if not isinstance(target, str):
            return None
        msg = self.messages.get(target)
        if msg is None:
            # Not one of ours. (A receipt never comes before its message: the ledger stores
            # it only once the message is in the log, and its lamport is higher.)
            return None
        if ev.get("author") != msg.recipient:
            return None  # only the recipient acknowledges (the ledger refuses others too)
        at = data.get("delivered_at" if kind == DELIVERED else "read_at")
        if not isinstance(at, str):
            return None
        if kind == DELIVERED and msg.delivered_at is None:
            msg.delivered_at = at
        elif kind == READ and msg.read_at is None:
            msg.read_at = at
            msg.delivered_at = msg.delivered_at or at  # read implies delivered
        return msg

    # ------------------------------------------------------------------ queries

    def history(self, peer: str | None = None, *, since_lamport: int = 0,
                limit: int = DEFAULT_LIMIT) -> list[ChatMessage]:
        """The newest `limit` messages after `since_lamport` (with `peer`, or all), in
        (lamport, event_id) order."""
        found = [m for m in self.messages.values()
                 if m.lamport > since_lamport and (peer is None or m.peer(self.me) == peer)]
        found.sort(key=lambda m: (m.lamport, m.event_id))
        return found[-limit:] if limit > 0 else []

    def unread(self, peer: str | None = None) -> list[ChatMessage]:
        """Messages to us not yet marked read (from `peer`, or anyone), oldest first."""
        found = [m for m in self.messages.values()
                 if m.recipient == self.me and m.read_at is None and (peer is None or m.sender == peer)]
        return sorted(found, key=lambda m: (m.lamport, m.event_id))

    def unread_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for m in self.unread():
            counts[m.sender] = counts.get(m.sender, 0) + 1
        return counts

    def undelivered_to_us(self) -> list[ChatMessage]:
        """Messages to us that have no `delivered` (or `read`) receipt of ours yet."""
        found = [m for m in self.messages.values() if m.recipient == self.me and m.delivered_at is None]
        return sorted(found, key=lambda m: (m.lamport, m.event_id))

    def peers(self) -> list[str]:
        return sorted({m.peer(self.me) for m in self.messages.values()})


def _clear(data: dict[str, Any]) -> dict[str, Any]:
    """A message sent without encryption (an older node, or a test): readable as it is."""
    body, atts = data.get("body"), data.get("attachments")
    if not isinstance(body, str) or not isinstance(atts, list):
        raise Undecryptable("malformed message")
    return {"body": body, "attachments": [{"cid": a["cid"], "name": a["name"]} for a in atts
                                          if isinstance(a, dict) and isinstance(a.get("cid"), str)
                                          and isinstance(a.get("name"), str)]}
