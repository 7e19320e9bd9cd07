"""POST /sync/v1/admit (transport capability `sync.admit`): the inviter's node admits the
holder of one of its invites (views.py rule R3).

A join is valid only with an `admission` signed by the invite author's node, which signs
{"invite_event_id", "invitee_node_id", "at"} with its device key only while its own clock
is before the invite's `expires_at`. So a late joiner cannot get one, whatever clock it
puts on its `community.member.joined`.

Request body {"community_id", "invite_event_id"}, signed like the other sync routes (members
and holders of an unexpired invite may call; peer_api._sync_caller). Answer {"admission"}.
Refusals: `invite_expired` (our clock is past expires_at), `unauthorized` (the caller is not
the invitee, the invite was used already, or it is not ours to admit), `not_found` (no
such invite in our log).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiohttp import web

from hearthnet.errors import HearthNetError
from hearthnet.identity.manifest import parse_rfc3339, utcnow
from hearthnet.ledger.events import ULID_RE, build_admission

if TYPE_CHECKING:
    from hearthnet.gateway.app import Gateway

INVITED = "community.member.invited"
JOINED = "community.member.joined"


async def admit(gw: "Gateway", request: web.Request) -> web.Response:
    from hearthnet.gateway.peer_api import _community_body, _signed_body, _signed_json, _sync_caller
    from hearthnet.transport.signing import H_FROM, SYNC_ADMIT

    body = _community_body(gw, await _signed_body(request))
    invite_id = body.get("invite_event_id")
    if not isinstance(invite_id, str) or not ULID_RE.match(invite_id):
        raise HearthNetError("bad_request", "invite_event_id must be an event id")
    try:
        caller = await _sync_caller(gw, request, SYNC_ADMIT, body)
    except HearthNetError as exc:
        # _sync_caller lets only holders of an UNEXPIRED invite through; say why a late
        # holder is refused (the signature was verified before `unauthorized`).
        if exc.code == "unauthorized":
            invite = await _invite(gw, invite_id)
            if invite is not None and invite["data"]["invitee_node_id"] == request.headers.get(H_FROM):
                _check_unexpired(invite)
        raise
    invite = await _invite(gw, invite_id)
    if invite is None:
        raise HearthNetError("not_found", f"this node's log holds no invite {invite_id}")
    await _check_admissible(gw, invite, caller)
    return _signed_json(gw, request, {"admission": build_admission(gw.kp, invite_id, caller, utcnow())})


async def _invite(gw: "Gateway", invite_id: str) -> dict[str, Any] | None:
    from hearthnet.gateway.peer_api import _ledger

    found = (await _ledger(gw, "community.log.events", {"ids": [invite_id], "event_types": [INVITED]}))["events"]
    return found[0] if found else None


async def _check_admissible(gw: "Gateway", invite: dict[str, Any], caller: str) -> None:
    from hearthnet.gateway.peer_api import _ledger

    if invite["author"] != gw.kp.node_id_full:
        raise HearthNetError("unauthorized", "this invite was issued by another node; ask that node")
    if invite["data"]["invitee_node_id"] != caller:
        raise HearthNetError("unauthorized", "this invite is addressed to another node")
    _check_unexpired(invite)
    joins = (await _ledger(gw, "community.log.events", {"event_types": [JOINED]}))["events"]
    if any(ev["data"].get("invite_event_id") == invite["event_id"] for ev in joins):
        raise HearthNetError("unauthorized", "this invite was used already")


def _check_unexpired(invite: dict[str, Any]) -> None:
    if utcnow() > parse_rfc3339(invite["data"]["expires_at"]):
        raise HearthNetError("invite_expired", f"the invite expired at {invite['data']['expires_at']}")
