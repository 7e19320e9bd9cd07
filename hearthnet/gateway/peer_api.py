"""Capability calls from other nodes (CONTRACT §5, DESIGN.md §3): the request lifecycle of
the spec — verify the signed X-HearthNet-* headers (key from -From, skew ≤ 120 s, no
replayed request id), the caller must be a community member with the capability's
trust level, then the per-peer rate limits, then the broker. Peers reach only this
node's own (local) providers, never a third node through us, so calls cannot loop."""
from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Any

from aiohttp import web

from hearthnet.errors import HearthNetError
from hearthnet.transport.signing import verify_request
from hearthnet.transport.trust import check_caller

if TYPE_CHECKING:
    from hearthnet.gateway.app import Gateway

log = logging.getLogger("hearthnet.gateway.peers")


async def call(gw: "Gateway", request: web.Request) -> web.StreamResponse:
    from hearthnet.gateway.app import _capability_headers

    cap, version = _capability_headers(request)
    body = await _signed_body(request)
    caller = verify_request(request.headers, body, replay=gw.replay,
                            community_id=gw.cfg.community.community_id)
    desc = await gw.descriptor(cap)
    if desc is None:
        raise HearthNetError("not_found", f"this node does not serve {cap}")
    check_caller(caller, await gw.membership(), str(desc.get("trust_required") or "member"),
                 self_node_id=gw.kp.node_id_full)
    rate = gw.limiter.check(caller, cap)
    if not rate.allowed:  # hard limit: drop without an answer (spec §7)
        log.warning("peer over the hard rate limit; dropped", extra={"peer": caller, "capability": cap})
        if request.transport is not None:
            request.transport.close()
        return web.Response(status=429)
    if rate.soft_exceeded:
        raise HearthNetError("rate_limited", f"too many calls to {cap}; slow down",
                             retry_after_ms=rate.retry_after_ms)
    trace = request.headers.get("X-HearthNet-Request-Id", "")
    return await gw.dispatch(request, cap, version, body, caller=caller, trace=trace,
                             local_only=True, sign=True)


async def _signed_body(request: web.Request) -> Any:
    """The body exactly as signed: parsed JSON, or None when empty."""
    raw = await request.read()
    if not raw:
        return None
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise HearthNetError("bad_request", f"request body is not JSON: {exc}") from None


# ---- gossip sync routes (X02 §7; /ids and /pull are ours, see hearthnet/sync.py) --------

async def _sync_caller(gw: "Gateway", request: web.Request, capability: str, body: Any) -> str:
    """Members may sync; so may a node holding a valid invite, which must fetch the log
    before it can append its own `community.member.joined` (M13 §6.4, DESIGN.md §5)."""
    caller = verify_request(request.headers, body, replay=gw.replay,
                            community_id=gw.cfg.community.community_id,
                            expect_capability=capability)
    try:
        check_caller(caller, await gw.membership(), "member", self_node_id=gw.kp.node_id_full)
    except HearthNetError as exc:
        if exc.code != "unauthorized" or not await _holds_invite(gw, caller):
            raise
    # A sync round is one bulk transfer between members: only the hard limit applies
    # (the soft 10/s would cut a large round off half way).
    rate = gw.limiter.check(caller, capability)
    if not rate.allowed:
        raise HearthNetError("rate_limited", "too many sync requests", retry_after_ms=rate.retry_after_ms)
    return caller


async def _holds_invite(gw: "Gateway", node_id: str) -> bool:
    from hearthnet.identity.manifest import parse_rfc3339, utcnow

    invites = (await _ledger(gw, "community.log.events",
                             {"event_types": ["community.member.invited"]}))["events"]
    now = utcnow()
    for ev in invites:
        data = ev.get("data") or {}
        if data.get("invitee_node_id") == node_id:
            try:
                if parse_rfc3339(str(data.get("expires_at"))) > now:
                    return True
            except (ValueError, HearthNetError):
                continue
    return False


async def _ledger(gw: "Gateway", cap: str, inp: dict[str, Any]) -> dict[str, Any]:
    out = await gw.bus.call(cap, "1.0", {"params": {}, "input": inp}, caller=gw.kp.node_id_full,
                            timeout=60)
    return out.get("output", {})


def _signed_json(gw: "Gateway", request: web.Request, body: dict[str, Any]) -> web.Response:
    from hearthnet.gateway.app import _dumps
    from hearthnet.transport.signing import sign_response

    rid = request.headers.get("X-HearthNet-Request-Id", "")
    headers = {"X-HearthNet-Request-Id": rid, **sign_response(gw.kp, rid, 200, body)}
    return web.json_response(body, headers=headers, dumps=_dumps)


def _community_body(gw: "Gateway", body: Any) -> dict[str, Any]:
    if not isinstance(body, dict) or body.get("community_id") != gw.cfg.community.community_id:
        raise HearthNetError("bad_request", "body must name this community's community_id")
    return body


async def sync_heads(gw: "Gateway", request: web.Request) -> web.Response:
    from hearthnet.transport.signing import SYNC_HEADS

    await _sync_caller(gw, request, SYNC_HEADS, None)
    return _signed_json(gw, request, await _ledger(gw, "community.log.heads", {}))


async def sync_ids(gw: "Gateway", request: web.Request) -> web.Response:
    from hearthnet.transport.signing import SYNC_IDS

    body = _community_body(gw, await _signed_body(request))
    await _sync_caller(gw, request, SYNC_IDS, body)
    return _signed_json(gw, request, await _ledger(gw, "community.log.ids", {"since_lamport": 0}))


async def sync_events(gw: "Gateway", request: web.Request) -> web.Response:
    from hearthnet.transport.signing import SYNC_EVENTS

    body = _community_body(gw, await _signed_body(request))
    await _sync_caller(gw, request, SYNC_EVENTS, body)
    events = body.get("events")
    if not isinstance(events, list):
        raise HearthNetError("bad_request", "events must be a list")
    return _signed_json(gw, request, await _ledger(gw, "community.log.ingest", {"events": events}))


async def sync_pull(gw: "Gateway", request: web.Request) -> web.Response:
    from hearthnet.transport.signing import SYNC_PULL

    body = _community_body(gw, await _signed_body(request))
    await _sync_caller(gw, request, SYNC_PULL, body)
    ids = body.get("ids")
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        raise HearthNetError("bad_request", "ids must be a list of event ids")
    return _signed_json(gw, request, await _ledger(gw, "community.log.events", {"ids": ids}))
