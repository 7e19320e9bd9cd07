"""Discovery's introspection: plain-language reasons why there are no peers
(`diagnose`) and the JSON shown by `hearthnet status` (`status`). It only reads the
orchestrator's state (discovery/service.py); nothing here changes it."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from hearthnet.discovery.registry import SOURCES

if TYPE_CHECKING:
    from hearthnet.discovery.service import Discovery, Target

STARTUP_GRACE_SECONDS = 15.0


def diagnose(d: "Discovery") -> list[str]:
    """Plain-language reasons: mechanism failures always; when there are no peers,
    every reason we know for that (never an empty list then)."""
    if d._started_at is None:
        return ["discovery is not running"]
    reasons = interface_reasons(d) + mechanism_reasons(d)
    if len(d.registry):
        return reasons
    reasons += peerless_reasons(d)
    return reasons or ["no other node has been found yet"]


def interface_reasons(d: "Discovery") -> list[str]:
    return [f"configured interface {name} does not exist or has no IPv4 address (discovery.interfaces)"
            for name in d._selection.missing]


def mechanism_reasons(d: "Discovery") -> list[str]:
    out: list[str] = []
    udp, mdns, cache = d.mechanisms["udp"], d.mechanisms["mdns"], d.mechanisms["cache"]
    if udp.enabled and not udp.up:
        out.append(f"no multicast socket: {udp.error}")
    if mdns.enabled and not mdns.up:
        out.append(f"mDNS unavailable: {mdns.error}")
    if not cache.up and cache.error:
        out.append(f"peer cache not saved: {cache.error}")
    return out


def peerless_reasons(d: "Discovery") -> list[str]:
    out: list[str] = []
    uptime = d._clock() - (d._started_at or d._clock())
    if uptime < STARTUP_GRACE_SECONDS:
        out.append(f"discovery started {uptime:.0f} s ago; other nodes may not have answered yet")
    if not d.config.udp_enabled and not d.config.mdns_enabled:
        out.append("UDP and mDNS discovery are both turned off (discovery.udp_enabled, discovery.mdns_enabled); "
                   "only cached and manual peers can be found (hearthnet peer add HOST:PORT)")
    out += silence_reasons(d)
    out += foreign_reasons(d)
    out += [reason for t in d._targets.values() if (reason := target_reason(t))]
    return out


def silence_reasons(d: "Discovery") -> list[str]:
    """Multicast is up but nobody of our community spoke."""
    if any(not t.manual and t.sources - {"cache"} for t in d._targets.values()):
        return []
    working: list[str] = []
    out: list[str] = []
    if d._udp is not None:
        listener = d._udp[0]
        where = f"UDP {listener.group}:{listener.port} on {', '.join(a.name for a in listener.interfaces)}"
        if listener.stats.own == 0 and d._udp[1].sent > 0:
            out.append(f"{where}: not even this node's own announcements came back; "
                       "a firewall may be blocking multicast")
        else:
            working.append(where)
    if d._mdns is not None:
        working.append("mDNS")
    if working and not d._foreign:  # else the foreign-community line says who answered
        out.insert(0, f"multicast is working but no other node answered ({'; '.join(working)}); "
                      "if this network drops multicast (common on Wi-Fi), add a peer by hand: "
                      "hearthnet peer add HOST:PORT")
    return out


def foreign_reasons(d: "Discovery") -> list[str]:
    if not d._foreign:
        return []
    n = len(d._foreign)
    communities = sorted({f.community_short for f in d._foreign.values()})
    return [f"{n} node{'s' if n != 1 else ''} seen from another community ({', '.join(communities)}); "
            "they are not members of this node's community"]


def target_reason(t: "Target") -> str | None:
    if t.foreign:
        return None
    label = f"manual peer {t.address}" if t.manual else (
        f"cached peer {t.address}" if t.sources == {"cache"} else
        f"node {t.node_short or t.address} at {t.address} (found by {', '.join(sorted(t.sources))})")
    if t.is_self:
        return f"{label} is this node itself"
    if t.error is None:
        return f"{label}: not tried yet" if t.attempts == 0 and t.manual else None
    if t.error.code == "manifest_fetch_failed":
        return f"{label} unreachable: {t.error.message}"
    if t.error.details.get("reason") == "not_member":
        return f"{label} is not a member of this community: {t.error.message}"
    hint = "; check both machines' clocks" if t.error.details.get("reason") == "expired" else ""
    return f"{label} sent an invalid manifest: {t.error.message}{hint}"


def status(d: "Discovery") -> dict[str, Any]:
    now = d._clock()
    peers = d.registry.all()
    by_source = {s: sum(1 for p in peers if p.source == s) for s in SOURCES}
    doc: dict[str, Any] = {
        "running": d._started_at is not None,
        "uptime_seconds": round(now - d._started_at, 1) if d._started_at is not None else 0,
        "node_id_short": d._node_short,
        "community_id_short": d._community_short,
        "offline_mode": d._offline,
        "peers": [{**p.to_json(now), "how_found": p.source} for p in peers],
        "counts": {"peers": len(peers), "by_source": by_source},
        "mechanisms": {name: m.to_json() for name, m in d.mechanisms.items()},
        "interfaces": {"configured": list(d.config.interfaces) or "all",
                       "selected": [f"{a.name} ({a.ip})" for a in d._selection.addrs],
                       "missing": list(d._selection.missing)},
        "pending": [t.to_json() for t in d._targets.values() if not d._is_live_peer(t)],
        "foreign": [{"node_id_short": f.node_short, "community_id_short": f.community_short, "host": f.host,
                     "sources": sorted(f.sources), "last_seen_seconds_ago": round(now - f.last_seen, 1)}
                    for f in d._foreign.values()],
    }
    if d._udp is not None:
        listener, announcer = d._udp
        stats = dict(vars(listener.stats))
        last = stats.pop("last_from_other")
        doc["udp"] = {"group": listener.group, "port": listener.port, "sent": announcer.sent,
                      "interval_seconds": d._udp_interval(), **stats,
                      "last_from_other_seconds_ago": None if last is None else round(now - last, 1)}
    return doc
