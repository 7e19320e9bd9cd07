"""The chat service (spec §2, issue 9 point 3): 1:1 messages between members, bodies
end-to-end encrypted (crypto.py), stored and forwarded by the event log, with
`delivered` and `read` receipts and unread counts per peer.

    chat.send     self    {client_id?, recipient, body, attachments?[{cid, name}]}
                          -> {event_id, lamport, delivered: direct|queued}
    chat.history  self    {peer?, since_lamport?, limit?=200} -> {messages: [{event_id, lamport, from, to, body,
                          attachments, created_at, delivered_at, read_at, direction, decrypted, encrypted}]}
    chat.read     self    {peer?, event_ids?} -> {marked, event_ids}: `read` receipts for the unread
                          messages from `peer` (or exactly `event_ids`)
    chat.unread   self    {} -> {unread: [{peer, count}], total}
    chat.deliver  member  {event} -> {stored}: a peer hands us its own chat event addressed to us
                          (a message to us, or a receipt for our message); our ledger verifies it

The worker follows the ledger (catch-up + `community.log.subscribe`, renewed when it
breaks) into the ChatView, and appends one `delivered` receipt for every message to us
that has none of ours yet: the view is rebuilt from the log at start, so this holds
across restarts without any state of its own.
"""
from __future__ import annotations

import asyncio
import logging
import time
import uuid
from typing import Any

from hearthnet.blobs.cids import is_cid
from hearthnet.bus.service import Capability, Request
from hearthnet.errors import HearthNetError, IdentityError
from hearthnet.identity.keys import KeyPair, parse_node_id
from hearthnet.identity.manifest import rfc3339, utcnow
from hearthnet.services.chat.crypto import ENC_SCHEME, ChatCrypto
from hearthnet.services.chat.delivery import DIRECT, QUEUED, Delivery
from hearthnet.services.chat.view import CHAT_TYPES, DEFAULT_LIMIT, DELIVERED, READ, SENT, ChatMessage, ChatView

log = logging.getLogger("hearthnet.chat")

MAX_BODY_BYTES = 16 * 1024  # UTF-8 bytes of the text
MAX_ATTACHMENTS = 16
MAX_NAME_CHARS = 255
MAX_CLIENT_ID_CHARS = 128
MAX_LIMIT = 1000
LEDGER_TIMEOUT_SECONDS = 10.0
READY_TIMEOUT_SECONDS = 10.0
CATCH_UP_PAGE = 1000
RESUBSCRIBE_SECONDS = 1.0


class ChatService:
    name = "chat"

    def __init__(self, bus: Any, kp: KeyPair) -> None:
        self.bus = bus
        self.node_id = kp.node_id_full
        self.view = ChatView(ChatCrypto(kp))
        self.delivery = Delivery(bus, self.node_id)
        self._ready = asyncio.Event()
        self._send_lock = asyncio.Lock()
        self._routes: dict[str, str] = {}  # event_id -> how chat.send delivered it (this run)
        self._receipting: set[str] = set()  # messages whose delivered receipt is being appended
        self._tasks: set[asyncio.Task] = set()

    @classmethod
    def from_config(cls, cfg: Any) -> "ChatService":
        from hearthnet.bus.client import BusClient
        from hearthnet.identity import keys

        return cls(BusClient(cfg.paths.broker_clients_endpoint), keys.load(cfg.identity.keys_dir))

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        start = getattr(self.bus, "start", None)
        if start is not None:
            await start()
        self._spawn(self._follow_events())

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        close = getattr(self.bus, "close", None)
        if close is not None:
            await close()

    def health(self) -> dict[str, Any]:
        if not self._ready.is_set():
            return {"note": "reading the event log"}
        unread = sum(self.view.unread_counts().values())
        return {"note": f"{len(self.view.messages)} messages, {unread} unread"}

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ------------------------------------------------------------------ capabilities

    def capabilities(self) -> list[Capability]:
        obj, text, integer = {"type": "object"}, {"type": "string"}, {"type": "integer", "minimum": 0}
        atts = {"type": "array", "items": {"type": "object", "properties": {"cid": text, "name": text}}}

        def schema(**props: Any) -> dict[str, Any]:
            return {"type": "object", "properties": {"params": obj, "input": {"type": "object", "properties": props}}}

        def cap(name: str, handler: Any, request: dict[str, Any], trust: str = "self", **kw: Any) -> Capability:
            return Capability(name=name, handler=handler, stability="beta", trust_required=trust,
                              request_schema=request, response_schema=obj, max_concurrent=8,
                              timeout_seconds=15, **kw)

        return [
            cap("chat.send", self.send, schema(client_id=text, recipient=text, body=text, attachments=atts),
                idempotent=True),
            cap("chat.history", self.history, schema(peer=text, since_lamport=integer, limit=integer),
                idempotent=True),
            cap("chat.read", self.read, schema(peer=text, event_ids={"type": "array", "items": text})),
            cap("chat.unread", self.unread, schema(), idempotent=True),
            cap("chat.deliver", self.deliver, schema(event=obj), trust="member", idempotent=True),
        ]

    async def _wait_ready(self) -> None:
        try:
            await asyncio.wait_for(self._ready.wait(), READY_TIMEOUT_SECONDS)
        except TimeoutError:
            raise HearthNetError("timeout", "the chat worker is still reading the event log; try again") from None

    # ------------------------------------------------------------------ chat.send

    async def send(self, req: Request) -> dict[str, Any]:
        t0 = time.monotonic()
        client_id, recipient, body, attachments = self._send_input(req.input)
        await self._wait_ready()
        async with self._send_lock:  # one client_id -> one event, even for concurrent retries
            known = self.view.by_client_id.get(client_id)
            if known is not None:
                return self._send_answer(self.view.messages[known], t0, duplicate=True)
            try:
                ciphertext = self.view.crypto.encrypt(recipient, body, attachments)
            except Exception:  # noqa: BLE001 - a 32-byte id that is no curve point
                raise HearthNetError("bad_request", "recipient is not a valid node key") from None
            ev = await self._append(SENT, {"client_id": client_id, "recipient": recipient, "body": ciphertext,
                                           "attachments": [], "enc": ENC_SCHEME})
            msg = self.view.apply(ev)
        assert msg is not None
        self._routes[ev["event_id"]] = await self.delivery.push(ev, recipient)
        return self._send_answer(msg, t0)

    def _send_answer(self, msg: ChatMessage, t0: float, *, duplicate: bool = False) -> dict[str, Any]:
        how = self._routes.get(msg.event_id) or (DIRECT if msg.delivered_at else QUEUED)
        return {"output": {"event_id": msg.event_id, "lamport": msg.lamport, "delivered": how},
                "meta": {"ms": round((time.monotonic() - t0) * 1000, 2), "duplicate": duplicate}}

    def _send_input(self, inp: dict[str, Any]) -> tuple[str, str, str, list[dict[str, str]]]:
        client_id = inp.get("client_id")
        if client_id is None:
            client_id = uuid.uuid4().hex
        if not isinstance(client_id, str) or not 0 < len(client_id) <= MAX_CLIENT_ID_CHARS:
            raise HearthNetError("bad_request", f"client_id must be a string of 1..{MAX_CLIENT_ID_CHARS} characters")
        recipient = self._node_id_input(inp.get("recipient"), "recipient")
        if recipient == self.node_id:
            raise HearthNetError("bad_request", "a message to yourself: choose another member")
        body = inp.get("body", "")
        if not isinstance(body, str):
            raise HearthNetError("bad_request", "body must be a string")
        size = len(body.encode("utf-8", "surrogatepass"))
        if size > MAX_BODY_BYTES:
            raise HearthNetError("bad_request", f"body is {size} bytes; the limit is {MAX_BODY_BYTES} "
                                                "(16 KiB of text): send a long text as a file attachment")
        attachments = _attachments(inp.get("attachments", []))
        if not body.strip() and not attachments:
            raise HearthNetError("bad_request", "empty message: give a body or an attachment")
        return client_id, recipient, body, attachments

    @staticmethod
    def _node_id_input(value: Any, what: str) -> str:
        try:
            parse_node_id(value)
        except IdentityError:
            raise HearthNetError("bad_request", f"{what} must be a full node id (ed25519:...)") from None
        return value

    # ------------------------------------------------------------------ history, read, unread

    async def history(self, req: Request) -> dict[str, Any]:
        inp = req.input
        peer = inp.get("peer")
        if peer is not None:
            peer = self._node_id_input(peer, "peer")
        since, limit = _int(inp, "since_lamport", 0, 0, None), _int(inp, "limit", DEFAULT_LIMIT, 1, MAX_LIMIT)
        await self._wait_ready()
        found = self.view.history(peer, since_lamport=since, limit=limit)
        return {"output": {"messages": [m.to_wire(self.node_id) for m in found]},
                "meta": {"count": len(found)}}

    async def read(self, req: Request) -> dict[str, Any]:
        """`read` receipts for the unread messages from `peer`, or for exactly the
        `event_ids` given (what the caller showed), or both filters together."""
        inp = req.input
        peer, ids = inp.get("peer"), inp.get("event_ids")
        if peer is not None:
            peer = self._node_id_input(peer, "peer")
        if ids is not None and (not isinstance(ids, list) or not all(isinstance(i, str) for i in ids)):
            raise HearthNetError("bad_request", "event_ids must be a list of event ids")
        if peer is None and ids is None:
            raise HearthNetError("bad_request", "give peer, event_ids or both")
        await self._wait_ready()
        wanted = set(ids) if ids is not None else None
        marked = []
        for msg in self.view.unread(peer):
            if wanted is not None and msg.event_id not in wanted:
                continue
            ev = await self._append(READ, {"target_event_id": msg.event_id, "read_at": rfc3339(utcnow())})
            self.view.apply(ev)
            marked.append(msg.event_id)
            self._spawn(self.delivery.push(ev, msg.sender))
        return {"output": {"marked": len(marked), "event_ids": marked}, "meta": {}}

    async def unread(self, req: Request) -> dict[str, Any]:
        await self._wait_ready()
        counts = self.view.unread_counts()
        return {"output": {"unread": [{"peer": p, "count": n} for p, n in sorted(counts.items())],
                           "total": sum(counts.values())}, "meta": {}}

    # ------------------------------------------------------------------ chat.deliver (peers)

    async def deliver(self, req: Request) -> dict[str, Any]:
        """A peer pushes its own chat event that concerns us. Only that narrow case is
        taken (anything else travels by gossip); the ledger verifies it fully."""
        ev = req.input.get("event")
        if not isinstance(ev, dict) or ev.get("event_type") not in CHAT_TYPES:
            raise HearthNetError("bad_request", "event must be a chat.message.* event")
        if ev.get("author") != req.caller:
            raise HearthNetError("unauthorized", "a node may push only events it authored")
        data = ev.get("data") if isinstance(ev.get("data"), dict) else {}
        if ev["event_type"] == SENT:
            if data.get("recipient") != self.node_id:
                raise HearthNetError("bad_request", "the message is not addressed to this node")
        else:
            await self._wait_ready()
            target = self.view.messages.get(str(data.get("target_event_id")))
            if target is None or target.sender != self.node_id:
                raise HearthNetError("bad_request", "the receipt is not for a message this node sent")
        out = await self._ledger("community.log.ingest", {"events": [ev]})
        stored = bool(out.get("accepted")) or bool(out.get("duplicates"))
        reasons = out.get("rejected_reasons") or []
        return {"output": {"stored": stored, "reason": None if stored or not reasons else reasons[0].get("reason")},
                "meta": {}}

    # ------------------------------------------------------------------ the ledger

    async def _ledger(self, cap: str, inp: dict[str, Any]) -> dict[str, Any]:
        out = await self.bus.call(cap, "1.0", {"params": {}, "input": inp}, caller=self.node_id,
                                  timeout=LEDGER_TIMEOUT_SECONDS, node=self.node_id)
        return out.get("output") or {}

    async def _append(self, event_type: str, data: dict[str, Any]) -> dict[str, Any]:
        out = await self._ledger("community.log.append", {"event_type": event_type, "data": data})
        ev = out.get("event")
        if not isinstance(ev, dict):
            raise HearthNetError("internal_error", "the ledger answered without the event")
        return ev

    async def _follow_events(self) -> None:
        """The chat events of the log into the view: on each (re)subscription, once it
        is live, every stored one (so none stored meanwhile is missed), then the live
        ones; then receipts for what arrived."""
        body = {"params": {}, "input": {"event_types": list(CHAT_TYPES)}}
        while True:
            try:
                async for event, data in self.bus.stream("community.log.subscribe", "1.0", body,
                                                         caller=self.node_id, node=self.node_id, timeout=10 ** 7):
                    if event == "subscribed":
                        await self._catch_up()
                        self._ready.set()
                        await self._send_receipts()
                    elif event == "event" and isinstance(data, dict):
                        msg = self.view.apply(data)
                        if msg is not None and msg.recipient == self.node_id and msg.delivered_at is None:
                            await self._send_receipts()
                    elif event in ("done", "error"):
                        break
            except HearthNetError as exc:
                log.info("event subscription ended; renewing", extra={"code": exc.code})
            except Exception:  # noqa: BLE001 - whatever one event did, keep following the log
                log.exception("following the event log failed; renewing")
            await asyncio.sleep(RESUBSCRIBE_SECONDS)

    async def _catch_up(self) -> None:
        """Every stored chat event, page by page in log order (a page starts again at its
        last lamport value, since several events may share one; repeats are harmless)."""
        since = 0
        while True:
            out = await self._ledger("community.log.events", {"event_types": list(CHAT_TYPES),
                                                              "since_lamport": since, "limit": CATCH_UP_PAGE})
            page = [ev for ev in out.get("events") or [] if isinstance(ev, dict)]
            for ev in page:
                self.view.apply(ev)
            last = page[-1].get("lamport") if page else None
            if len(page) < CATCH_UP_PAGE or not isinstance(last, int):
                return
            since = last - 1 if last - 1 > since else last

    async def _send_receipts(self) -> None:
        """One `delivered` receipt per message to us without one; pushed to the sender."""
        for msg in self.view.undelivered_to_us():
            if msg.event_id in self._receipting:
                continue
            self._receipting.add(msg.event_id)
            try:
                ev = await self._append(DELIVERED, {"target_event_id": msg.event_id,
                                                    "delivered_at": rfc3339(utcnow())})
                self.view.apply(ev)
                self._spawn(self.delivery.push(ev, msg.sender))
            except HearthNetError as exc:  # tried again on the next event or subscription
                log.warning("could not append a delivered receipt", extra={"event_id": msg.event_id,
                                                                           "code": exc.code})
            finally:
                self._receipting.discard(msg.event_id)


def _attachments(value: Any) -> list[dict[str, str]]:
    if not isinstance(value, list) or len(value) > MAX_ATTACHMENTS:
        raise HearthNetError("bad_request", f"attachments must be a list of at most {MAX_ATTACHMENTS}")
    out = []
    for att in value:
        if not isinstance(att, dict) or not is_cid(att.get("cid")):
            raise HearthNetError("bad_request", "each attachment needs cid (blake3:<64 hex>) and name")
        name = att.get("name", "")
        if not isinstance(name, str) or len(name) > MAX_NAME_CHARS:
            raise HearthNetError("bad_request", f"an attachment's name is a string of at most {MAX_NAME_CHARS}")
        out.append({"cid": att["cid"], "name": name})
    return out


def _int(inp: dict[str, Any], key: str, default: int, low: int, high: int | None) -> int:
    value = inp.get(key, default)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or value < low or (high is not None and value > high):
        bound = f"{low}..{high}" if high is not None else f">= {low}"
        raise HearthNetError("bad_request", f"{key} must be an integer {bound}")
    return value
