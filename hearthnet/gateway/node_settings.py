"""The owner's settings routes on the local API (README "The UI", Settings tab):

- `POST /api/v1/settings/name` {"display_name"}: rename the node. The name is checked
  like `hearthnet init` checks it, written under [node] in config.toml (atomically, with
  config.update_config_file: other keys kept), then used at once: both gateways' config
  (the local API's copy and the peer port's) take it and drop their cached signed
  manifest, so the next GET /manifest carries it, and supervisord restarts the discovery
  worker so mDNS/UDP announce it.
- `POST /api/v1/community/join` {"invite", "confirm"}: without confirm, the invite's
  preview (hearthnet.onboarding.switch.preview_invite) and whether this node may switch;
  with it, the join itself — only for a node alone in its own community — then, once the
  reply is out, supervisord restarts every program so all workers read the new community.

The handlers stay thin; the blocking work (config file, the join's own event loop) runs
in a thread off the local API's loop.
"""
from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import threading
import unicodedata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiohttp import web

from hearthnet.errors import HearthNetError
from hearthnet.gateway.http import read_json
from hearthnet.onboarding import switch
from hearthnet.onboarding.errors import OnboardingError

if TYPE_CHECKING:
    from hearthnet.config import Config
    from hearthnet.gateway.app import Gateway

log = logging.getLogger("hearthnet.gateway.settings")
NAME_ENV = "HEARTHNET_NODE_DISPLAY_NAME"
EVENTS_PAGE = 500
RESTART_DELAY_SECONDS = 0.3  # lets the reply leave the socket before supervisord stops us
_joining = threading.Lock()  # one join at a time (the UI may be open in two tabs)
_switched: list[str] = []  # the community joined; this process ends with the restart


# ---- rename ---------------------------------------------------------------------------


async def rename(gw: "Gateway", request: web.Request) -> web.Response:

    body = await read_json(request)
    name = check_display_name(body.get("display_name") if isinstance(body, dict) else None)
    path = await asyncio.to_thread(write_display_name, gw.cfg, name)
    use_display_name(gw, name)
    restarted = await asyncio.to_thread(restart_discovery, gw)
    log.info("node renamed", extra={"display_name": name, "restarted": restarted})
    return web.json_response({"ok": True, "display_name": name, "config_file": str(path),
                              "restarted": restarted})


def check_display_name(value: Any) -> str:
    """The name, stripped; `bad_request` unless it is 1-64 characters (init's rule) of
    printable text (it is announced on the LAN and shown on every member's screen)."""
    from hearthnet.node_init import _check_display_name

    if not isinstance(value, str):
        raise HearthNetError("bad_request", "display_name must be a string")
    name = value.strip()
    problem = _check_display_name(name)
    if problem:
        raise HearthNetError("bad_request", f"the display name {problem} (got {len(name)})")
    if any(unicodedata.category(c).startswith("C") for c in name):
        raise HearthNetError("bad_request", "the display name may not hold control characters")
    if os.environ.get(NAME_ENV):
        raise HearthNetError("bad_request", f"the display name is set by {NAME_ENV} in the node's "
                                            f"environment, which config.toml cannot override")
    return name


def write_display_name(cfg: "Config", name: str) -> Path:
    """display_name under [node] of config.toml, every other key kept (atomic write)."""
    from hearthnet.config import update_config_file

    return update_config_file(cfg.source or cfg.paths.config_file, {"node": {"display_name": name}})


def use_display_name(gw: "Gateway", name: str) -> None:
    """Both gateways (this local API's copy and the main one serving the peer port) take
    the new name; their signed manifests are rebuilt on the next request."""
    for g in (gw, gw.origin):
        if g is None:
            continue
        g.cfg = dataclasses.replace(g.cfg, node=dataclasses.replace(g.cfg.node, display_name=name))
        g._manifest = None


def restart_discovery(gw: "Gateway") -> list[str]:
    """Restart the discovery worker (its announcements carry the name); the programs
    restarted."""
    names = {p.get("name") for p in gw.supervisor.processes()}
    return ["discovery"] if "discovery" in names and gw.supervisor.restart_program("discovery") else []


# ---- join by invite -------------------------------------------------------------------


async def join(gw: "Gateway", request: web.Request) -> web.StreamResponse:

    text, confirm = join_input(await read_json(request))
    if not confirm:
        preview = await asyncio.to_thread(switch.preview_invite, gw.cfg, gw.kp, text)
        problem = None if preview.same_community else await solo_problem(gw)
        return web.json_response({"ok": True, "preview": preview.to_dict(), "can_join": problem is None,
                                  "why_not": problem})
    if _switched or not _joining.acquire(blocking=False):
        raise HearthNetError("bad_request", "a join is under way or done on this node; it is restarting")
    try:
        result = await _join(gw, text)
        if result["changed"]:
            _switched.append(result["community_id"])
    finally:
        _joining.release()
    if not result["changed"]:
        return web.json_response({"ok": True, "joined": result, "restarting": False, "old_community": None})
    return await reply_then_restart(gw, request, {
        "ok": True, "joined": result, "restarting": True,
        "old_community": {"community_id": gw.cfg.community.community_id, "name": gw.cfg.community.name,
                          "state_dir": str(gw.cfg.community.state_dir), "kept": True}})


def join_input(body: Any) -> tuple[str, bool]:
    if not isinstance(body, dict):
        raise HearthNetError("bad_request", 'the body must be {"invite": TEXT, "confirm": BOOL}')
    confirm = body.get("confirm", False)
    if not isinstance(confirm, bool):
        raise HearthNetError("bad_request", "confirm must be true or false")
    switch.parse_invite(body.get("invite"))  # invite_invalid before anything else happens
    return str(body["invite"]), confirm


async def _join(gw: "Gateway", text: str) -> dict[str, Any]:
    from hearthnet.onboarding.invite import check_invite

    blob = switch.parse_invite(text)
    check_invite(blob, gw.kp.node_id_full)  # addressee and expiry, whatever follows
    if blob.community_id != gw.cfg.community.community_id:  # the same one: redeem's no-op
        problem = await solo_problem(gw)
        if problem:
            raise OnboardingError("other_community", problem, hint=switch.ERASE_HINT)
        if switch.has_custom_state_dir(gw.cfg):
            raise HearthNetError("bad_request", "config.toml sets [community] state_dir: the new community "
                                                "would share it; use `hearthnet invite redeem` instead")
        result = await asyncio.to_thread(switch.join_from_solo, gw.cfg, gw.kp, text)
        return result.to_dict()
    return {"changed": False, "community_id": blob.community_id, "community_name": gw.cfg.community.name,
            "message": "this node is already in that community; nothing to do"}


async def solo_problem(gw: "Gateway") -> str | None:
    """Why this node's community is not solo (from the ledger: members, then the authors
    of every event, page by page), or None."""
    me = gw.kp.node_id_full
    members = await _ledger(gw, "community.members.get", {})
    first = switch.solo_problem(me, members, [])
    if first:
        return first
    authors: set[str] = set()
    after = 0
    while True:
        page = await _ledger(gw, "community.log.events", {"after_seq": after, "limit": EVENTS_PAGE})
        events, seqs = page.get("events") or [], page.get("seqs") or []
        authors.update(str(ev.get("author")) for ev in events if isinstance(ev, dict))
        if len(events) < EVENTS_PAGE or not seqs:
            return switch.solo_problem(me, members, authors)
        after = int(seqs[-1])


async def _ledger(gw: "Gateway", cap: str, inp: dict[str, Any]) -> dict[str, Any]:
    out = await gw.bus.call(cap, "1.0", {"params": {}, "input": inp}, caller=gw.kp.node_id_full,
                            timeout=30, local_only=True)
    return out.get("output") or {}


async def reply_then_restart(gw: "Gateway", request: web.Request, doc: dict[str, Any]) -> web.StreamResponse:
    """Send `doc` in full, then have supervisord restart every program (this gateway
    included): `supervisor.restart()` re-reads its config in the same process, so `hearthnet
    run`, the run dir and the owner token stay."""
    resp = web.json_response(doc)
    await resp.prepare(request)
    await resp.write_eof()
    threading.Thread(target=_restart_all, args=(gw.supervisor,), name="restart-node", daemon=True).start()
    return resp


def _restart_all(supervisor: Any) -> None:
    import time

    time.sleep(RESTART_DELAY_SECONDS)
    if supervisor.restart_all():
        log.info("node restarting for its new community")
        supervisor.poke_for(10)  # wakes supervisord's loop so it acts now (until it stops us)
    else:
        log.error("supervisord did not accept the restart; restart the node by hand")
