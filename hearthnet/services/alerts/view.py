"""The alerts of the event log, and per alert the roll-up of acknowledgements (issue 10
point 3). Pure, no I/O: the service feeds it log events and passes in the membership.

Alerts, supersessions and acknowledgements are kept apart, so the order in which events
arrive (catch-up, live stream, a gossip batch) does not matter:

- an alert is *superseded* by an Update or Cancel that names it in `references` (the
  newest such one is `superseded_by`); a Cancel also cancels it;
- an alert is *active* when it is not expired, not cancelled, not superseded, and is not
  itself a Cancel (a Cancel message calls for no action);
- a member's latest acknowledgement (highest lamport, then event id) is the one counted.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Iterable, Mapping

from hearthnet.identity.manifest import parse_rfc3339

ISSUED = "emergency.alert.issued"
ACKED = "emergency.alert.acknowledged"
ALERT_TYPES = (ISSUED, ACKED)
MIN_PREFIX = 6
ROLLUP_KEYS = ("ok", "need_help", "other")
ALERT_FIELDS = ("identifier", "status", "msg_type", "urgency", "severity", "certainty", "headline",
                "description", "instruction", "area", "expires", "references")


@dataclass
class Ack:
    event_id: str
    lamport: int
    author: str
    at: str
    status: str
    note: str

    def newer_than(self, other: "Ack") -> bool:
        return (self.lamport, self.event_id) > (other.lamport, other.event_id)


@dataclass
class Alert:
    event_id: str
    lamport: int
    sender: str
    sent: str
    data: dict[str, Any]

    def expired(self, now: datetime) -> bool:
        try:
            return parse_rfc3339(self.data["expires"]) <= now
        except (ValueError, KeyError):  # the ledger checked the shape; an unreadable time is no deadline
            return False


@dataclass
class AlertView:
    alerts: dict[str, Alert] = field(default_factory=dict)
    # target alert id -> [(lamport, event_id, msg_type)] of the Updates/Cancels naming it
    superseders: dict[str, list[tuple[int, str, str]]] = field(default_factory=dict)
    # target alert id -> author -> that author's latest acknowledgement
    acks: dict[str, dict[str, Ack]] = field(default_factory=dict)

    def apply(self, ev: Mapping[str, Any]) -> None:
        data = ev.get("data")
        if not isinstance(data, dict) or not isinstance(ev.get("event_id"), str):
            return
        if ev.get("event_type") == ISSUED:
            self._issued(ev, data)
        elif ev.get("event_type") == ACKED:
            self._acked(ev, data)

    def _issued(self, ev: Mapping[str, Any], data: dict[str, Any]) -> None:
        eid = ev["event_id"]
        if eid in self.alerts:
            return
        self.alerts[eid] = Alert(eid, int(ev.get("lamport") or 0), str(ev.get("author")), str(ev.get("wall_clock")),
                                 {k: data.get(k) for k in ALERT_FIELDS})
        if data.get("msg_type") in ("Update", "Cancel"):
            for ref in data.get("references") or []:
                self.superseders.setdefault(str(ref), []).append((int(ev.get("lamport") or 0), eid,
                                                                  str(data["msg_type"])))

    def _acked(self, ev: Mapping[str, Any], data: dict[str, Any]) -> None:
        ack = Ack(ev["event_id"], int(ev.get("lamport") or 0), str(ev.get("author")), str(ev.get("wall_clock")),
                  str(data.get("status")), str(data.get("note") or ""))
        per_alert = self.acks.setdefault(str(data.get("target_event_id")), {})
        known = per_alert.get(ack.author)
        if known is None or ack.newer_than(known):
            per_alert[ack.author] = ack

    # ------------------------------------------------------------------ queries

    def resolve(self, ref: str) -> list[str]:
        """Alert ids equal to `ref` or starting with it (a prefix of MIN_PREFIX+ chars)."""
        if ref in self.alerts:
            return [ref]
        if len(ref) < MIN_PREFIX:
            return []
        return sorted(eid for eid in self.alerts if eid.startswith(ref))

    def superseded_by(self, event_id: str) -> str | None:
        found = self.superseders.get(event_id)
        return max(found)[1] if found else None

    def cancelled(self, event_id: str) -> bool:
        return any(kind == "Cancel" for _, _, kind in self.superseders.get(event_id, ()))

    def active(self, alert: Alert, now: datetime) -> bool:
        return (alert.data.get("msg_type") != "Cancel" and not alert.expired(now)
                and not self.cancelled(alert.event_id) and self.superseded_by(alert.event_id) is None)

    def newest_first(self) -> list[Alert]:
        return sorted(self.alerts.values(), key=lambda a: (a.lamport, a.event_id), reverse=True)

    def rollup(self, alert: Alert, members: Iterable[str], names: Mapping[str, str | None]) -> dict[str, Any]:
        """ok / need_help / other: every member's latest acknowledgement; not_heard: the
        current members other than the sender with none (the door-knock list)."""
        out: dict[str, list[dict[str, Any]]] = {k: [] for k in (*ROLLUP_KEYS, "not_heard")}
        acks = self.acks.get(alert.event_id, {})
        for ack in sorted(acks.values(), key=lambda a: (a.lamport, a.event_id)):
            bucket = ack.status if ack.status in ROLLUP_KEYS else "other"
            out[bucket].append({"node_id": ack.author, "name": names.get(ack.author), "at": ack.at,
                                "note": ack.note})
        for node in sorted(set(members)):
            if node != alert.sender and node not in acks:
                out["not_heard"].append({"node_id": node, "name": names.get(node)})
        return out

    def to_wire(self, alert: Alert, *, now: datetime, me: str, members: Iterable[str],
                names: Mapping[str, str | None]) -> dict[str, Any]:
        d = alert.data
        mine = self.acks.get(alert.event_id, {}).get(me)
        return {
            "event_id": alert.event_id, "lamport": alert.lamport, "identifier": d.get("identifier"),
            "sender": alert.sender, "sender_name": names.get(alert.sender), "sent": alert.sent,
            **{k: d.get(k) for k in ("status", "msg_type", "urgency", "severity", "certainty", "headline",
                                     "description", "instruction", "area", "expires")},
            "references": list(d.get("references") or []),
            "active": self.active(alert, now), "superseded_by": self.superseded_by(alert.event_id),
            "cancelled": self.cancelled(alert.event_id), "exercise": d.get("status") != "Actual",
            "rollup": self.rollup(alert, members, names),
            "my_ack": None if mine is None else {"status": mine.status, "note": mine.note, "at": mine.at},
        }
