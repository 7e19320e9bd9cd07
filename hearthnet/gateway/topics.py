"""Live-update topics (issue 9 point 1; spec svc-market-chat-file §0) and resume tokens.

A topic names a set of stored ledger events:

    community.event                every event the ledger stores (local or received)
    marketplace.post.created       market.post.created   (the spec's topic names carry
    marketplace.post.updated       market.post.updated    `marketplace.`, the ledger's
    marketplace.post.expired       market.post.expired    event types `market.`)
    emergency.alert.issued         emergency.alert.issued (every alert, Update, Cancel)
    emergency.alert.acknowledged   emergency.alert.acknowledged
    chat.message.<full node id>    chat.message.sent whose data.recipient is that node
    chat.receipt.<full node id>    chat.message.delivered|read of a message that node sent

and one local topic that is no ledger event and never goes on the wire (issue 10):

    emergency.mode                 this node's emergency detector: the current state, then each
                                   change of mode (fed from `emergency.watch`, live.py; no id:)

A resume token is the decimal `seq` of the last event a client got: its place in this
node's storage order (hearthnet/ledger/store.py), not a lamport. Tokens mean nothing on
another node.

Pure functions, no I/O: the receipt topics need the target message's author, which the
caller looks up and passes in (`author_of_target`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Mapping

from hearthnet.errors import HearthNetError

ALL = "community.event"
MODE = "emergency.mode"  # local: fed by the emergency detector, not by the ledger
MARKET_TOPICS = {"marketplace.post.created": "market.post.created",
                 "marketplace.post.updated": "market.post.updated",
                 "marketplace.post.expired": "market.post.expired",
                 # emergency alerts (issue 10): the topic is the ledger's event type
                 "emergency.alert.issued": "emergency.alert.issued",
                 "emergency.alert.acknowledged": "emergency.alert.acknowledged"}
MESSAGE_PREFIX = "chat.message."
RECEIPT_PREFIX = "chat.receipt."
MESSAGE_TYPE = "chat.message.sent"
RECEIPT_TYPES = ("chat.message.delivered", "chat.message.read")
MAX_TOPICS = 32
MAX_TOKEN = 2 ** 63 - 1  # SQLite's largest rowid


@dataclass(frozen=True)
class Topic:
    name: str  # as the client wrote it (the SSE `event:` of its frames)
    event_types: frozenset[str] | None  # None: every type
    node: str | None = None  # chat topics: the recipient / the sender of the receipted message
    local: bool = False  # emergency.mode: matches no ledger event (event_types is empty)

    @property
    def needs_target_author(self) -> bool:
        return self.name.startswith(RECEIPT_PREFIX)


def parse_topic(raw: Any) -> Topic:
    """One topic; HearthNetError('bad_request') for anything else."""
    if not isinstance(raw, str) or not raw:
        raise HearthNetError("bad_request", "a topic must be a non-empty string")
    if raw == ALL:
        return Topic(raw, None)
    if raw in MARKET_TOPICS:
        return Topic(raw, frozenset({MARKET_TOPICS[raw]}))
    if raw == MODE:
        return Topic(raw, frozenset(), local=True)
    for prefix, types in ((MESSAGE_PREFIX, (MESSAGE_TYPE,)), (RECEIPT_PREFIX, RECEIPT_TYPES)):
        if raw.startswith(prefix):
            return Topic(raw, frozenset(types), _node_id(raw[len(prefix):], raw))
    raise HearthNetError("bad_request", f"unknown topic {raw[:100]!r}; use {ALL}, "
                                        f"{', '.join(MARKET_TOPICS)}, {MESSAGE_PREFIX}<node id>, "
                                        f"{RECEIPT_PREFIX}<node id> or {MODE}")


def parse_topics(raws: Iterable[Any]) -> list[Topic]:
    """The request's topics, duplicates dropped, order kept; at least one."""
    names = list(dict.fromkeys(raws))
    if not names:
        raise HearthNetError("bad_request", "give at least one topic=")
    if len(names) > MAX_TOPICS:
        raise HearthNetError("bad_request", f"at most {MAX_TOPICS} topics per subscription")
    return [parse_topic(n) for n in names]


def _node_id(text: str, topic: str) -> str:
    from hearthnet.identity.keys import parse_node_id

    try:
        parse_node_id(text)
    except HearthNetError:
        raise HearthNetError("bad_request", f"topic {topic[:100]!r} needs a full node id "
                                            f"(ed25519:…, as `hearthnet id` prints it)") from None
    return text


def event_types(topics: Iterable[Topic]) -> list[str] | None:
    """The ledger event types the topics can match (None: every type), to filter at the
    source."""
    found: set[str] = set()
    for t in topics:
        if t.event_types is None:
            return None
        found |= t.event_types
    return sorted(found)


def match(topics: Iterable[Topic], ev: Mapping[str, Any], author_of_target: str | None = None) -> str | None:
    """The name of the first topic (in the client's order, a specific one before
    community.event) that `ev` belongs to, else None. Each event is sent once per
    stream, under that name. `author_of_target`: for a receipt, the author of the
    message it acknowledges (None when unknown)."""
    topics = list(topics)
    for t in sorted(topics, key=lambda t: t.event_types is None):  # stable: specific first
        if _belongs(t, ev, author_of_target):
            return t.name
    return None


def _belongs(t: Topic, ev: Mapping[str, Any], author_of_target: str | None) -> bool:
    kind = ev.get("event_type")
    if t.event_types is not None and kind not in t.event_types:
        return False
    if t.node is None:
        return True
    data = ev.get("data") if isinstance(ev.get("data"), dict) else {}
    if kind == MESSAGE_TYPE:
        return data.get("recipient") == t.node
    return author_of_target == t.node


def receipt_target(ev: Mapping[str, Any]) -> str | None:
    """The message id a receipt acknowledges (None for any other event)."""
    data = ev.get("data")
    if ev.get("event_type") not in RECEIPT_TYPES or not isinstance(data, dict):
        return None
    target = data.get("target_event_id")
    return target if isinstance(target, str) else None


def parse_token(raw: str | None) -> int | None:
    """A resume token (Last-Event-ID or since=): a seq, or None when absent/empty."""
    if raw is None or raw.strip() == "":
        return None
    text = raw.strip()
    if not text.isascii() or not text.isdigit() or len(text) > 19 or int(text) > MAX_TOKEN:
        raise HearthNetError("bad_request", f"resume token {raw[:40]!r} is not one this node gave out "
                                            f"(a non-negative integer)")
    return int(text)
