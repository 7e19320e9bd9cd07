"""Capability calls and sync from other nodes (CONTRACT §5 as amended in
transport/signing.py, DESIGN.md §3). Every signed route goes through the same steps, in
this order, and reads no body byte before the sender is proven a current member:

1. the signed headers (`verify_request_headers`): addressed to this node, not from it,
   signature, clock skew, community — strangers' requests stop here or at 2;
2. membership (`await gw.membership()`): unauthorized / revoked;
3. the replay cache (each member has its own share, so nobody can fill it for others);
4. the connection is marked trusted for the guard (no header deadline any more);
5. rate limits per peer;
6. the body: its bytes claimed in the port's body budget (bodybudget.py), read with a
   size cap and a deadline while hashing, compared with the signed hash, parsed with a
   depth bound.

Peers reach only this node's own (local) providers, never a third node through us, so
calls cannot loop. The deadline is the signed one, capped by the capability's
`timeout_seconds`.
"""
from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any

from aiohttp import web

from hearthnet import jsonbound
from hearthnet.constants import MAX_REQUEST_BYTES
from hearthnet.errors import HearthNetError
from hearthnet.gateway.bodybudget import BODY_BUDGET, BODY_HOLD, BodyBudget, Hold
from hearthnet.gateway.http import signed_json_response
from hearthnet.ledger.digest import parse_ranges, wire_ranges
from hearthnet.transport.signing import SignedRequest, verify_request_headers
from hearthnet.transport.trust import check_caller, permits

if TYPE_CHECKING:
    from hearthnet.gateway.app import Gateway

log = logging.getLogger("hearthnet.gateway.peers")

BODY_CHUNK_SECONDS = 5.0  # a body that stalls this long is cut
BODY_TOTAL_SECONDS = 60.0  # 16 MiB at ~0.3 MB/s
SYNC_LEDGER_TIMEOUT_SECONDS = 60.0
INVITEE_MISS_PER_SECOND = 5
INVITEES_CACHE_SECONDS = 1.0
_SIGNED = "hearthnet.signed"  # request key: the SignedRequest once admitted
_RAW_HASHED = "hearthnet.raw_hashed"  # request key: body read before admission (old order)


# --------------------------------------------------------------------------- common steps


def _verified_headers(gw: "Gateway", request: web.Request, expect: str | None) -> SignedRequest:
    return verify_request_headers(request.headers, self_node_id=gw.kp.node_id_full,
                                  community_id=gw.cfg.community.community_id,
                                  expect_capability=expect)


def _remember(gw: "Gateway", request: web.Request, req: SignedRequest) -> None:
    """Steps 3 and 4: only for a proven member (or invitee)."""
    gw.replay.add(req.sender, req.request_id, req.timestamp, _now())
    request[_SIGNED] = req
    if gw.guard is not None:
        gw.guard.trust(request.transport)
    raw = request.get(_RAW_HASHED)
    if raw is not None:  # the route read the body first (old order): compare now
        req.check_body(raw)


def _now() -> Any:
    from hearthnet.identity.manifest import utcnow

    return utcnow()


async def read_body(request: web.Request, req: SignedRequest | None = None,
                    limit: int = MAX_REQUEST_BYTES, budget: BodyBudget | None = None) -> bytearray:
    """The raw body, at most `limit` bytes (413 beyond), cut when it stalls
    BODY_CHUNK_SECONDS or takes over BODY_TOTAL_SECONDS (`timeout`), hashed on the way
    and compared with the signed hash when `req` is given. The bytes are claimed in the
    body budget (`budget`, else the one the peer middleware put in `request[BODY_BUDGET]`)
    before they are read — Content-Length up front, else chunk by chunk — and stay
    claimed until the request ends: the middleware releases `request[BODY_HOLD]`."""
    if request.content_length is not None and request.content_length > limit:
        raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=request.content_length)
    hold = _hold(request, req, budget)
    if hold is not None and request.content_length:
        await hold.claim(request.content_length)  # refused here, before a byte is read
    hasher = req.hasher() if req is not None else None
    # With Content-Length the buffer is allocated once and filled in place (appending
    # chunks would reallocate and copy it as it grows).
    buf, got = bytearray(request.content_length or 0), 0
    deadline = time.monotonic() + BODY_TOTAL_SECONDS
    while True:
        wait = min(BODY_CHUNK_SECONDS, deadline - time.monotonic())
        try:
            chunk = await asyncio.wait_for(request.content.readany(), timeout=max(wait, 0.001))
        except asyncio.TimeoutError:
            raise HearthNetError("timeout", "request body did not arrive in time") from None
        if not chunk:
            break
        end = got + len(chunk)
        if end > limit:
            raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=end)
        if hold is not None and end > hold.size:  # no (or a short) Content-Length
            await hold.claim(end - hold.size)
        buf[got:end] = chunk  # in place while within the allocation, else appended
        got = end
        if hasher is not None:
            hasher.update(chunk)
    del buf[got:]  # a body shorter than announced (aiohttp normally refuses those)
    if hasher is not None:
        hasher.check()
    return buf  # not copied into bytes: a large body is held once


def _hold(request: web.Request, req: SignedRequest | None, budget: BodyBudget | None) -> Hold | None:
    """This request's claim in the body budget, made on first use (keyed by the signed
    sender, or by the source address before admission)."""
    budget = budget if budget is not None else request.get(BODY_BUDGET)
    if budget is None:
        return None
    hold = request.get(BODY_HOLD)
    if hold is None:
        hold = request[BODY_HOLD] = budget.hold(req.sender if req is not None else f"addr:{request.remote}")
    return hold


def parse_body(raw: bytes | bytearray) -> Any:
    """The parsed JSON body (None when empty); bad_request if it is not bounded JSON."""
    if not raw:
        return None
    try:
        return jsonbound.loads(raw)
    except ValueError as exc:
        raise HearthNetError("bad_request", f"request body is not JSON: {exc}") from None


async def _signed_body(request: web.Request) -> Any:
    """The body as signed, parsed. After admission it is checked against the signed
    hash as it is read; a route that reads it before admission (the old order) has it
    checked by `_sync_caller` instead."""
    req = request.get(_SIGNED)
    raw = await read_body(request, req)
    if req is None:
        request[_RAW_HASHED] = raw
    return parse_body(raw)


def _effective_timeout(req: SignedRequest, desc: dict[str, Any]) -> float:
    cap_limit = float(desc.get("timeout_seconds") or 30)
    return min(req.timeout_seconds, cap_limit) if req.timeout_seconds else cap_limit


# --------------------------------------------------------------------------- calls


async def call(gw: "Gateway", request: web.Request) -> web.StreamResponse:
    req = _verified_headers(gw, request, None)
    members = await gw.membership()
    level = check_caller(req.sender, members, "member", self_node_id=gw.kp.node_id_full)
    desc = await gw.descriptor(req.capability)
    if desc is None:
        raise HearthNetError("not_found", f"this node does not serve {req.capability}")
    need = str(desc.get("trust_required") or "member")
    if not permits(level, need):
        raise HearthNetError("unauthorized", f"this needs trust level {need}; {req.sender} is {level}")
    _remember(gw, request, req)
    rate = gw.limiter.check(req.sender, req.capability)
    if not rate.allowed:  # hard limit: drop without an answer (spec §7)
        log.warning("peer over the hard rate limit; dropped",
                    extra={"peer": req.sender, "capability": req.capability})
        if request.transport is not None:
            request.transport.close()
        return web.Response(status=429)
    if rate.soft_exceeded:
        raise HearthNetError("rate_limited", f"too many calls to {req.capability}; slow down",
                             retry_after_ms=rate.retry_after_ms)
    body = parse_body(await read_body(request, req))
    return await gw.dispatch(request, req.capability, req.version, body, caller=req.sender,
                             trace=req.request_id, local_only=True, sign=True,
                             timeout=_effective_timeout(req, desc), descriptor=desc)


# ---- gossip sync routes (X02 §7; /ids and /pull are ours, see hearthnet/sync.py) --------


async def _sync_caller(gw: "Gateway", request: web.Request, capability: str, body: Any = None) -> str:
    """Admit a sync request from its headers; returns the caller. Members may sync; so
    may a node holding a valid invite, which must fetch the log before it can append
    its own `community.member.joined` (M13 §6.4, DESIGN.md §5). Read the body after
    this with `_signed_body(request)` (checked against the signed hash as it is read);
    `body` is unused, kept for callers that read it first."""
    req = _verified_headers(gw, request, capability)
    try:
        check_caller(req.sender, await gw.membership(), "member", self_node_id=gw.kp.node_id_full)
    except HearthNetError as exc:
        if exc.code != "unauthorized" or not await _holds_invite(gw, req.sender):
            raise
    _remember(gw, request, req)
    # A sync round is one bulk transfer between members: only the hard limit applies
    # (the soft 10/s would cut a large round off half way).
    rate = gw.limiter.check(req.sender, capability)
    if not rate.allowed:
        raise HearthNetError("rate_limited", "too many sync requests", retry_after_ms=rate.retry_after_ms)
    return req.sender


async def _invitees(gw: "Gateway", max_age: float = INVITEES_CACHE_SECONDS) -> set[str]:
    """Node ids holding a pending invite as the community view judges it (unused, not
    expired, not void because its inviter was revoked), cached: strangers' sync requests
    must not each cost a query."""
    from hearthnet.identity.manifest import parse_rfc3339, utcnow

    cache = getattr(gw, "_invitees_cache", None)
    if cache is not None and time.monotonic() - cache[0] < max_age:
        return cache[1]
    try:
        invites = (await _ledger(gw, "community.members.list", {})).get("pending_invites") or []
    except HearthNetError:
        invites = []  # the governance worker is restarting: no invitee syncs meanwhile
    now, out = utcnow(), set()
    for inv in invites:
        if not isinstance(inv, dict) or not isinstance(inv.get("invitee_node_id"), str):
            continue
        try:
            if parse_rfc3339(str(inv.get("expires_at"))) > now:
                out.add(inv["invitee_node_id"])
        except (ValueError, OverflowError, HearthNetError):
            continue
    gw._invitees_cache = (time.monotonic(), out)  # type: ignore[attr-defined]
    return out


async def _holds_invite(gw: "Gateway", node_id: str) -> bool:
    """A miss looks again (an invite made a moment ago), but at most INVITEE_MISS_PER_SECOND
    times a second, so a flood of strangers costs only a few queries."""
    if node_id in await _invitees(gw):
        return True
    now = time.monotonic()
    recent = [t for t in getattr(gw, "_invitee_misses", []) if now - t < 1.0]
    if len(recent) >= INVITEE_MISS_PER_SECOND:
        gw._invitee_misses = recent  # type: ignore[attr-defined]
        return False
    gw._invitee_misses = recent + [now]  # type: ignore[attr-defined]
    return node_id in await _invitees(gw, max_age=0.0)


async def _ledger(gw: "Gateway", cap: str, inp: dict[str, Any]) -> dict[str, Any]:
    out = await gw.bus.call(cap, "1.0", {"params": {}, "input": inp}, caller=gw.kp.node_id_full,
                            timeout=SYNC_LEDGER_TIMEOUT_SECONDS)
    return out.get("output", {})


def _signed_json(gw: "Gateway", request: web.Request, body: dict[str, Any]) -> web.Response:
    req = request.get(_SIGNED)
    rid = req.request_id if req is not None else request.headers.get("X-HearthNet-Request-Id", "")
    return signed_json_response(gw.kp, rid, 200, body)


def _community_body(gw: "Gateway", body: Any) -> dict[str, Any]:
    if not isinstance(body, dict) or body.get("community_id") != gw.cfg.community.community_id:
        raise HearthNetError("bad_request", "body must name this community's community_id")
    return body


async def sync_heads(gw: "Gateway", request: web.Request) -> web.Response:
    from hearthnet.transport.signing import SYNC_HEADS

    await _sync_caller(gw, request, SYNC_HEADS)
    return _signed_json(gw, request, await _ledger(gw, "community.log.heads", {}))


async def sync_ids(gw: "Gateway", request: web.Request) -> web.Response:
    from hearthnet.transport.signing import SYNC_IDS

    await _sync_caller(gw, request, SYNC_IDS)
    body = _community_body(gw, await _signed_body(request))
    if body.get("ranges") is None:  # every id (the full list; old peers and invitees ask this)
        return _signed_json(gw, request, await _ledger(gw, "community.log.ids", {"since_lamport": 0}))
    ranges = wire_ranges(parse_ranges(body["ranges"]))
    return _signed_json(gw, request, await _ledger(gw, "community.log.ids", {"ranges": ranges}))


async def sync_digest(gw: "Gateway", request: web.Request) -> web.Response:
    """{community_id, ranges: [{lamport_lo, lamport_hi}]} -> {ranges: [{..., count, hash}]}
    (ledger/digest.py): the ranges are checked here, before the ledger is asked."""
    from hearthnet.transport.signing import SYNC_DIGEST

    await _sync_caller(gw, request, SYNC_DIGEST)
    body = _community_body(gw, await _signed_body(request))
    ranges = wire_ranges(parse_ranges(body.get("ranges")))
    return _signed_json(gw, request, await _ledger(gw, "community.log.digest", {"ranges": ranges}))


async def sync_events(gw: "Gateway", request: web.Request) -> web.Response:
    from hearthnet.transport.signing import SYNC_EVENTS

    await _sync_caller(gw, request, SYNC_EVENTS)
    body = _community_body(gw, await _signed_body(request))
    events = body.get("events")
    if not isinstance(events, list):
        raise HearthNetError("bad_request", "events must be a list")
    return _signed_json(gw, request, await _ledger(gw, "community.log.ingest", {"events": events}))


async def sync_pull(gw: "Gateway", request: web.Request) -> web.Response:
    from hearthnet.transport.signing import SYNC_PULL

    await _sync_caller(gw, request, SYNC_PULL)
    body = _community_body(gw, await _signed_body(request))
    ids = body.get("ids")
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        raise HearthNetError("bad_request", "ids must be a list of event ids")
    return _signed_json(gw, request, await _ledger(gw, "community.log.events", {"ids": ids}))
