"""The alert service (issue 10 point 3): signed emergency alerts modelled on CAP 1.2,
acknowledgements, and per alert the roll-up with the members not yet heard from.

    alert.send     self    {headline, description?, instruction?, area?, severity?=Severe,
                            urgency?=Immediate, certainty?=Likely, status?=Actual, msg_type?=Alert,
                            references?[ids or prefixes], expires_in_seconds?=21600, identifier?}
                           -> {event_id, lamport, identifier, pushed: [node ids]}
    alert.list     self    {event_id? (or a unique 6+ prefix), active_only?=false} -> {alerts: [...]}
    alert.ack      self    {event_id (or prefix), status ok|need_help|other, note?} -> {event_id, lamport, pushed}
    alert.deliver  member  {event} -> {stored, reason}: a peer pushes an emergency.alert.* event it authored

Durable truth is the event log: the ledger checks who may issue (trusted/anchor only) and
that an Update/Cancel or an acknowledgement points at an alert; gossip carries every event
to every member. On top, `alert.send` and `alert.ack` hand the signed event at once to
every verified online peer's `alert.deliver`, whose own ledger verifies and stores it
(the pattern of chat.deliver), so an online neighbour sees an alert in milliseconds.
"""
from __future__ import annotations

import asyncio
import logging
from datetime import timedelta
from typing import Any

from hearthnet.bus.service import Capability, Request
from hearthnet.errors import HearthNetError
from hearthnet.identity.manifest import rfc3339, utcnow
from hearthnet.ids import new_ulid
from hearthnet.ledger.events import ACK_STATUSES, ALERT_ENUMS, ALERT_REFERENCES_MAX, ALERT_TEXT_MAX
from hearthnet.services.alerts.view import ACKED, ALERT_TYPES, ISSUED, MIN_PREFIX, AlertView
from hearthnet.services.follow import REVOKED, FollowedView, LogFollower

log = logging.getLogger("hearthnet.alerts")

DEFAULTS = {"severity": "Severe", "urgency": "Immediate", "certainty": "Likely", "status": "Actual",
            "msg_type": "Alert"}
DEFAULT_EXPIRES_SECONDS = 6 * 3600
MAX_EXPIRES_SECONDS = 7 * 86400
PUSH_TIMEOUT_SECONDS = 3.0
PEERS_TIMEOUT_SECONDS = 2.0
MEMBERS_TIMEOUT_SECONDS = 3.0


class AlertService(FollowedView):
    READY_WAIT_SECONDS = 10.0
    NOT_READY = "the alerts worker has not read the event log yet"
    name = "alerts"

    def __init__(self, bus: Any, node_id: str, membership: Any = None) -> None:
        self.bus = bus
        self.node_id = node_id
        self.membership = membership
        self.view = AlertView()
        self.follower = LogFollower(bus, node_id, [*ALERT_TYPES, REVOKED], self._rebuild, self._on_event)
        self.ready = asyncio.Event()
        self._tasks: set[asyncio.Task] = set()

    @classmethod
    def from_config(cls, cfg: Any) -> "AlertService":
        from hearthnet.bus.client import BusClient
        from hearthnet.identity import keys
        from hearthnet.membership import Membership

        node_id = keys.load(cfg.identity.keys_dir).node_id_full
        bus = BusClient(cfg.paths.broker_clients_endpoint)
        return cls(bus, node_id, Membership(bus, node_id))

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        start = getattr(self.bus, "start", None)
        if start is not None:
            await start()
        if self.membership is not None:
            self.membership.start()
        task = asyncio.ensure_future(self.follower.run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self.membership is not None:
            await self.membership.close()
        close = getattr(self.bus, "close", None)
        if close is not None:
            await close()

    def health(self) -> dict[str, Any]:
        if not self.ready.is_set():
            return {"note": "reading the event log"}
        now = utcnow()
        active = sum(1 for a in self.view.alerts.values() if self.view.active(a, now))
        return {"note": f"alerts: {active} active, {len(self.view.alerts)} in all"}

    # ------------------------------------------------------------------ following the ledger

    def _fresh_view(self) -> AlertView:
        return AlertView()

    async def _append(self, event_type: str, data: dict[str, Any]) -> dict[str, Any]:
        """Signed by this node; the ledger's refusal (unauthorized, not_found) reaches the
        caller as is, with its reason."""
        event = (await self.follower.ledger("community.log.append", {"event_type": event_type, "data": data}))["event"]
        self.view.apply(event)
        return event

    # ------------------------------------------------------------------ capabilities

    def capabilities(self) -> list[Capability]:
        obj, text, integer = {"type": "object"}, {"type": "string"}, {"type": "integer"}

        def schema(**props: Any) -> dict[str, Any]:
            return {"type": "object", "properties": {"params": obj, "input": {"type": "object", "properties": props}}}

        def cap(name: str, handler: Any, request: dict[str, Any], trust: str = "self", **kw: Any) -> Capability:
            return Capability(name=name, handler=handler, stability="beta", trust_required=trust,
                              request_schema=request, response_schema=obj, max_concurrent=8,
                              timeout_seconds=15, **kw)

        enum = {k: {"enum": list(v)} for k, v in ALERT_ENUMS.items()}
        return [
            cap("alert.send", self.send, schema(headline=text, description=text, instruction=text, area=text,
                                                references={"type": "array", "items": text},
                                                expires_in_seconds=integer, identifier=text, **enum)),
            cap("alert.list", self.list, schema(event_id=text, active_only={"type": "boolean"}), idempotent=True),
            cap("alert.ack", self.ack, schema(event_id=text, status={"enum": list(ACK_STATUSES)}, note=text)),
            cap("alert.deliver", self.deliver, schema(event=obj), trust="member", idempotent=True),
        ]

    # ------------------------------------------------------------------ alert.send

    async def send(self, req: Request) -> dict[str, Any]:
        data, refs = send_input(req.input)
        await self._wait_ready()
        data["references"] = [self._resolve(r) for r in refs]
        ev = await self._append(ISSUED, data)
        pushed = await self.push(ev)
        return {"output": {"event_id": ev["event_id"], "lamport": ev["lamport"], "identifier": data["identifier"],
                           "pushed": pushed}, "meta": {}}

    # ------------------------------------------------------------------ alert.list

    async def list(self, req: Request) -> dict[str, Any]:
        ref, active_only = req.input.get("event_id"), req.input.get("active_only", False)
        if ref is not None and not isinstance(ref, str):
            raise HearthNetError("bad_request", "input.event_id must be an alert's event id or a unique prefix")
        if not isinstance(active_only, bool):
            raise HearthNetError("bad_request", "input.active_only must be true or false")
        await self._wait_ready()
        alerts = [self.view.alerts[self._resolve(ref)]] if ref is not None else self.view.newest_first()
        now = utcnow()
        if active_only:
            alerts = [a for a in alerts if self.view.active(a, now)]
        members, names = await self._members()
        return {"output": {"alerts": [self.view.to_wire(a, now=now, me=self.node_id, members=members, names=names)
                                      for a in alerts]}, "meta": {"count": len(alerts)}}

    async def _members(self) -> tuple[list[str], dict[str, str | None]]:
        """Current members and their display names: the governance worker's list; when it
        does not answer, the membership view (no names)."""
        try:
            out = await self.bus.call("community.members.list", "1.0", {"params": {}, "input": {}},
                                      caller=self.node_id, node=self.node_id, timeout=MEMBERS_TIMEOUT_SECONDS)
            rows = [m for m in (out.get("output") or {}).get("members") or [] if isinstance(m, dict)]
            return [m["node_id"] for m in rows], {m["node_id"]: m.get("display_name") for m in rows}
        except HearthNetError as exc:
            log.info("member list unavailable; using the membership view", extra={"code": exc.code})
        if self.membership is None:
            return [], {}
        if not self.membership.loaded:
            await self.membership.refresh()
        return [n for n in self.membership.levels if self.membership.is_member(n)], {}

    # ------------------------------------------------------------------ alert.ack

    async def ack(self, req: Request) -> dict[str, Any]:
        inp = req.input
        ref, status, note = inp.get("event_id"), inp.get("status"), inp.get("note", "")
        if not isinstance(ref, str) or not ref:
            raise HearthNetError("bad_request", "input.event_id must be an alert's event id or a unique prefix")
        if status not in ACK_STATUSES:
            raise HearthNetError("bad_request", f"input.status must be one of {', '.join(ACK_STATUSES)}")
        note = _text(note if note is not None else "", "note")
        await self._wait_ready()
        ev = await self._append(ACKED, {"target_event_id": self._resolve(ref), "status": status, "note": note})
        return {"output": {"event_id": ev["event_id"], "lamport": ev["lamport"], "pushed": await self.push(ev)},
                "meta": {}}

    def _resolve(self, ref: Any) -> str:
        if not isinstance(ref, str) or not ref:
            raise HearthNetError("bad_request", "an alert reference must be an event id or a unique prefix")
        found = self.view.resolve(ref)
        if not found:
            hint = f" (a prefix needs {MIN_PREFIX}+ characters)" if len(ref) < MIN_PREFIX else ""
            raise HearthNetError("not_found", f"no alert {ref[:40]!r} on this node{hint}")
        if len(found) > 1:
            raise HearthNetError("bad_request", f"{ref!r} matches {len(found)} alerts: {', '.join(found[:5])}")
        return found[0]

    # ------------------------------------------------------------------ pushing to online peers

    async def online_peers(self) -> list[str]:
        """Full ids of the peers discovery has verified (empty when it does not answer)."""
        try:
            out = await self.bus.call("community.peers.list", "1.0", {"params": {}, "input": {}},
                                      caller=self.node_id, node=self.node_id, timeout=PEERS_TIMEOUT_SECONDS)
        except HearthNetError as exc:
            log.info("peer list unavailable", extra={"code": exc.code})
            return []
        peers = (out.get("output") or {}).get("peers") or []
        return sorted({p["node_id_full"] for p in peers
                       if isinstance(p, dict) and isinstance(p.get("node_id_full"), str)} - {self.node_id})

    async def push(self, ev: dict[str, Any]) -> list[str]:
        """Hand `ev` to every online peer at once; the ids of those that stored it. The
        rest get it by gossip."""
        peers = await self.online_peers()
        results = await asyncio.gather(*(self._push_one(ev, p) for p in peers))
        return [p for p, ok in zip(peers, results) if ok]

    async def _push_one(self, ev: dict[str, Any], to: str) -> bool:
        try:
            out = await self.bus.call("alert.deliver", "1.0", {"params": {}, "input": {"event": ev}},
                                      caller=self.node_id, node=to, timeout=PUSH_TIMEOUT_SECONDS)
        except HearthNetError as exc:
            log.info("alert push failed; gossip will carry it", extra={"to": to, "code": exc.code})
            return False
        return (out.get("output") or {}).get("stored") is True

    # ------------------------------------------------------------------ alert.deliver (peers)

    async def deliver(self, req: Request) -> dict[str, Any]:
        """A peer pushes an alert or acknowledgement it authored; our ledger verifies it
        fully (signature, membership, who may issue, what it points at)."""
        ev = req.input.get("event")
        if not isinstance(ev, dict) or ev.get("event_type") not in ALERT_TYPES:
            raise HearthNetError("bad_request", "event must be an emergency.alert.* event")
        if ev.get("author") != req.caller:
            raise HearthNetError("unauthorized", "a node may push only events it authored")
        out = await self.follower.ledger("community.log.ingest", {"events": [ev]})
        stored = bool(out.get("accepted")) or bool(out.get("duplicates"))
        reasons = out.get("rejected_reasons") or []
        reason = None if stored or not reasons else reasons[0].get("detail") or reasons[0].get("reason")
        return {"output": {"stored": stored, "reason": reason}, "meta": {}}


# ---------------------------------------------------------------------- input


def _text(value: Any, name: str) -> str:
    if not isinstance(value, str):
        raise HearthNetError("bad_request", f"input.{name} must be a string")
    limit = ALERT_TEXT_MAX[name]
    if len(value) > limit:
        raise HearthNetError("bad_request", f"input.{name} is {len(value)} characters; the limit is {limit}")
    return value


def send_input(inp: dict[str, Any]) -> tuple[dict[str, Any], list[Any]]:
    """The event data (references still to resolve) and the references as given;
    HearthNetError('bad_request') for anything the ledger would refuse as malformed."""
    headline = inp.get("headline")
    if not isinstance(headline, str) or not headline.strip():
        raise HearthNetError("bad_request", "input.headline is required: one line saying what is happening")
    data: dict[str, Any] = {"headline": _text(headline.strip(), "headline")}
    for name in ("description", "instruction", "area"):
        value = inp.get(name)
        data[name] = _text(value, name) if value is not None else ""
    for name, default in DEFAULTS.items():
        value = inp.get(name)
        value = default if value is None else value
        if value not in ALERT_ENUMS[name]:
            raise HearthNetError("bad_request", f"input.{name} must be one of {', '.join(ALERT_ENUMS[name])}")
        data[name] = value
    identifier = inp.get("identifier")
    data["identifier"] = _text(identifier, "identifier") if identifier is not None else f"hearthnet-{new_ulid()}"
    if not data["identifier"].strip():
        raise HearthNetError("bad_request", "input.identifier must not be empty")
    seconds = inp.get("expires_in_seconds", DEFAULT_EXPIRES_SECONDS)
    seconds = DEFAULT_EXPIRES_SECONDS if seconds is None else seconds
    if isinstance(seconds, bool) or not isinstance(seconds, int) or not 0 < seconds <= MAX_EXPIRES_SECONDS:
        raise HearthNetError("bad_request", f"input.expires_in_seconds must be 1..{MAX_EXPIRES_SECONDS} (7 days)")
    data["expires"] = rfc3339(utcnow() + timedelta(seconds=seconds))
    refs = inp.get("references") or []
    if not isinstance(refs, list) or len(refs) > ALERT_REFERENCES_MAX:
        raise HearthNetError("bad_request", f"input.references must be a list of at most {ALERT_REFERENCES_MAX} ids")
    if (data["msg_type"] != "Alert") != bool(refs):
        raise HearthNetError("bad_request", "an Update or Cancel names the alerts it replaces in references "
                                            "(and an Alert names none)")
    return data, refs
