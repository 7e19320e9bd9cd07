"""Who holds a blob: the node ids a fetch makes sources of (issue 7, point 4).

Three kinds of evidence, asked at once, each with a short timeout, and one failing
peer (or a ledger that does not answer) never fails the search:

- a `file.list {prefix: cid}` fan-out, targeted, to every remote node offering
  `file.list` (the broker's admin "caps" lists remote providers with their node ids):
  a node listing the CID holds it complete *now*; one that answers without it does not
  (it is left out, whatever older evidence says);
- `known`: the file worker's in-memory index of `file.advertise` calls;
- `file.cid.advertised` events in the ledger (`community.log.events`), newest first.

Order, best first: nodes that just listed it (in the order they answered, so the
quicker ones lead), then `known`, then the ledger's advertisers. When the broker's caps
answer is available, only nodes it can route `file.read` to are kept (a targeted call to
any other node is `not_found` at once anyway; the broker routes to current members only).
"""
from __future__ import annotations

import asyncio
import logging
from typing import Any, Iterable

from hearthnet.blobs.cids import check_cid
from hearthnet.errors import HearthNetError

log = logging.getLogger("hearthnet.blobs.holders")

ADVERTISED = "file.cid.advertised"
LIST_TIMEOUT_SECONDS = 3.0
LEDGER_TIMEOUT_SECONDS = 10.0


async def find_holders(bus: Any, cid: str, *, self_id: str, known: Iterable[str] = (),
                       timeout: float = LIST_TIMEOUT_SECONDS) -> list[str]:
    """Node ids that hold `cid`, best first, never `self_id`."""
    check_cid(cid)
    caps = await _remote_caps(bus, self_id)
    listers = [] if caps is None else caps.get("file.list", [])
    listed, ledger = await asyncio.gather(_fan_out(bus, cid, self_id, listers, timeout),
                                          _advertisers(bus, cid, self_id))
    has, has_not = listed
    order = [*has, *known, *ledger]
    reachable = None if caps is None else set(caps.get("file.read", []))
    out: list[str] = []
    for node in order:
        if (not isinstance(node, str) or node == self_id or node in out or node in has_not
                or (reachable is not None and node not in reachable)):
            continue
        out.append(node)
    return out


async def _remote_caps(bus: Any, self_id: str) -> dict[str, list[str]] | None:
    """capability name -> the remote node ids offering it; None when the broker does not say."""
    try:
        answer = await bus.admin("caps")
    except (HearthNetError, OSError) as exc:
        log.info("no capability list from the broker", extra={"reason": str(exc)})
        return None
    out: dict[str, list[str]] = {}
    for entry in answer.get("capabilities") or []:
        if not isinstance(entry, dict) or entry.get("local", True):
            continue
        node, name = entry.get("node_id"), entry.get("name")
        if isinstance(node, str) and node != self_id and isinstance(name, str):
            out.setdefault(name, [])
            if node not in out[name]:
                out[name].append(node)
    return out


async def _fan_out(bus: Any, cid: str, self_id: str, nodes: list[str],
                   timeout: float) -> tuple[list[str], set[str]]:
    """(nodes listing `cid`, in answer order; nodes that answered without it)."""
    has: list[str] = []
    has_not: set[str] = set()

    async def ask(node: str) -> None:
        try:
            out = await asyncio.wait_for(
                bus.call("file.list", "1.0", {"params": {}, "input": {"prefix": cid}}, caller=self_id,
                         timeout=timeout, node=node), timeout + 1.0)
        except (HearthNetError, asyncio.TimeoutError, OSError) as exc:
            log.info("file.list failed", extra={"node": node, "reason": str(exc)})
            return
        output = out.get("output") if isinstance(out, dict) else None
        cids = output.get("cids") if isinstance(output, dict) else None
        if not isinstance(cids, list):
            return  # a malformed answer is no evidence either way
        if cid in cids:
            has.append(node)
        else:
            has_not.add(node)

    await asyncio.gather(*(ask(n) for n in nodes))
    return has, has_not


async def _advertisers(bus: Any, cid: str, self_id: str) -> list[str]:
    """Authors of `file.cid.advertised` events for `cid`, newest first."""
    try:
        out = await bus.call("community.log.events", "1.0",
                             {"params": {}, "input": {"event_types": [ADVERTISED]}},
                             caller=self_id, timeout=LEDGER_TIMEOUT_SECONDS, node=self_id)
    except HearthNetError as exc:
        log.info("no advertisements from the ledger", extra={"reason": exc.message})
        return []
    output = out.get("output") if isinstance(out, dict) else None
    events = output.get("events") if isinstance(output, dict) else None
    authors: list[str] = []
    for ev in reversed(events if isinstance(events, list) else []):
        data = ev.get("data") if isinstance(ev, dict) else None
        author = ev.get("author") if isinstance(ev, dict) else None
        if isinstance(data, dict) and data.get("cid") == cid and isinstance(author, str) and author not in authors:
            authors.append(author)
    return authors
