"""Domain rules the ledger applies to the market and chat events it stores (issue 9):
who may update or expire a post, who a message may be sent to, who may acknowledge it.

views.py settles who is a member; these rules settle what a member may do to another
member's post or message. They run on every append, local or received, after the
membership check, so an event that breaks authorship never enters any node's log and
the refusal names its reason in the ledger's report (`rejected_reasons`).

Reasons: `unknown_target` (the post or message an event points at is not in this log,
or is of another type; it may arrive with a later sync, and the event is judged again
when it is re-sent), `unauthorized` (not the post's author nor a moderator; a receipt not
from the message's recipient), `unknown_recipient` (a message to a node that is not a
current member, or to its own author).

Emergency alerts (issue 10): issued only by trusted or anchor members; an Update or
Cancel must reference alerts in the log; an acknowledgement must point at an alert (any
member may acknowledge).

Moderators are trusted or anchor members at the time the event is judged. The spec's
M06 lets them expire only `stale` posts; CONTRACT §7.2 lets them expire for any reason
but `user_request`, which is what a board moderator needs ("fulfilled", "withdrawn" spam).
"""
from __future__ import annotations

from typing import Any, Callable, Mapping

UNKNOWN_TARGET = "unknown_target"
UNKNOWN_RECIPIENT = "unknown_recipient"
UNAUTHORIZED = "unauthorized"
MODERATOR_LEVELS = ("trusted", "anchor")

Event = Mapping[str, Any]
Lookup = Callable[[str], Event | None]  # an event of this log (or of the batch being stored) by id
LevelOf = Callable[[str], str | None]  # a current member's level, None for anyone else

DOMAIN_TYPES = frozenset({"market.post.updated", "market.post.expired", "chat.message.sent",
                          "chat.message.delivered", "chat.message.read", "emergency.alert.issued",
                          "emergency.alert.acknowledged"})
ALERT = "emergency.alert.issued"


def domain_problem(ev: Event, lookup: Lookup, level_of: LevelOf) -> tuple[str, str] | None:
    """(reason, detail) if `ev` breaks a domain rule, else None."""
    kind = ev["event_type"]
    if kind not in DOMAIN_TYPES:
        return None
    if kind == "chat.message.sent":
        return _recipient_problem(ev, level_of)
    if kind.startswith("market."):
        return _post_problem(ev, lookup, level_of)
    if kind == ALERT:
        return _alert_problem(ev, lookup, level_of)
    if kind == "emergency.alert.acknowledged":
        if _target(ev, lookup, ALERT) is None:
            return UNKNOWN_TARGET, "an acknowledgement of no alert in this log"
        return None
    return _receipt_problem(ev, lookup)


def _alert_problem(ev: Event, lookup: Lookup, level_of: LevelOf) -> tuple[str, str] | None:
    if level_of(ev["author"]) not in MODERATOR_LEVELS:
        return UNAUTHORIZED, "only a trusted or anchor member may issue an emergency alert"
    for ref in ev["data"]["references"]:
        target = lookup(ref)
        if target is None or target["event_type"] != ALERT:
            return UNKNOWN_TARGET, f"references {ref}, which is no alert in this log"
    return None


def _target(ev: Event, lookup: Lookup, kind: str) -> Event | None:
    target = lookup(ev["data"]["target_event_id"])
    return target if target is not None and target["event_type"] == kind else None


def _post_problem(ev: Event, lookup: Lookup, level_of: LevelOf) -> tuple[str, str] | None:
    post = _target(ev, lookup, "market.post.created")
    if post is None:
        return UNKNOWN_TARGET, f"{ev['event_type']} points at no market post in this log"
    if post["author"] == ev["author"]:
        return None
    if ev["event_type"] == "market.post.updated":
        return UNAUTHORIZED, "only a post's author may update it"
    if ev["data"]["reason"] == "user_request":
        return UNAUTHORIZED, "only a post's author may expire it with reason user_request"
    if level_of(ev["author"]) not in MODERATOR_LEVELS:
        return UNAUTHORIZED, "only a post's author or a trusted member may expire it"
    return None


def _recipient_problem(ev: Event, level_of: LevelOf) -> tuple[str, str] | None:
    recipient = ev["data"]["recipient"]
    if recipient == ev["author"]:
        return UNKNOWN_RECIPIENT, "a message to its own author"
    if level_of(recipient) is None:
        return UNKNOWN_RECIPIENT, "a message to a node that is not a current member"
    return None


def _receipt_problem(ev: Event, lookup: Lookup) -> tuple[str, str] | None:
    message = _target(ev, lookup, "chat.message.sent")
    if message is None:
        return UNKNOWN_TARGET, f"{ev['event_type']} points at no message in this log"
    if message["data"]["recipient"] != ev["author"]:
        return UNAUTHORIZED, "only a message's recipient may acknowledge it"
    return None
