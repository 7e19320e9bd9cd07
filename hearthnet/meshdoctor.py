"""`hearthnet doctor --mesh`: every member's signed health summary, in one table.

The members are this node's own view of the community log (`community.members.list`;
revoked nodes are not asked). Each is asked concurrently through the local API with
`X-HearthNet-Node` set to it, so the call leaves through this node's broker and peer
proxy (PeerClient: pinned TLS, signed request) like any remote call, and our own node
answers for itself the same way. No answer within the per-member timeout, or an error
(no route: not a peer now; refused; connection failed) → "not heard from". An answer
whose summary does not verify (hearthnet/health.py: signature, node id, community,
freshness, nonce) → "unverified", and nothing it claims is shown.

Exit code as `hearthnet doctor`'s: 0 when every member answered with a verified summary
that reports no failing check (warnings allowed), 1 otherwise.
"""
from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from hearthnet import health
from hearthnet.errors import HearthNetError

if TYPE_CHECKING:
    from hearthnet.cli.render import Output
    from hearthnet.localapi import LocalApi

DEFAULT_TIMEOUT_SECONDS = 5.0
MAX_PARALLEL = 16
TABLE_REASON_CHARS = 100  # the table clips a reason; --json has it whole
VERIFIED, UNVERIFIED, NOT_HEARD = "verified", "unverified", "not_heard_from"
Progress = Callable[["MemberHealth"], None]


@dataclass(frozen=True)
class Member:
    node_id: str
    display_name: str | None = None
    level: str | None = None

    @classmethod
    def from_record(cls, rec: Any) -> "Member | None":
        if not isinstance(rec, dict) or not isinstance(rec.get("node_id"), str):
            return None
        name = rec.get("display_name")
        return cls(rec["node_id"], name if isinstance(name, str) else None,
                   rec.get("level") if isinstance(rec.get("level"), str) else None)


@dataclass
class MemberHealth:
    member: Member
    state: str  # verified | unverified | not_heard_from
    reason: str | None = None
    summary: dict[str, Any] | None = None  # only when verified: nothing unverified is kept
    ms: float | None = None
    is_self: bool = False

    @property
    def healthy(self) -> bool | None:
        return bool(self.summary["healthy"]) if self.summary is not None else None

    def fact(self, key: str) -> Any:
        return self.summary.get(key) if self.summary is not None else None

    def to_dict(self) -> dict[str, Any]:
        from hearthnet.identity.keys import short_node_id

        m = self.member
        try:
            short = short_node_id(m.node_id)
        except HearthNetError:
            short = m.node_id
        return {"node_id": m.node_id, "node_id_short": short, "display_name": m.display_name,
                "level": m.level, "self": self.is_self, "state": self.state,
                "up": {VERIFIED: True, NOT_HEARD: False}.get(self.state), "reason": self.reason,
                "healthy": self.healthy, "version": self.fact("version"), "profile": self.fact("profile"),
                "online_state": self.fact("online_state"), "uptime_seconds": self.fact("uptime_seconds"),
                "sync": self.fact("sync"), "event_log": self.fact("event_log"),
                "failing_checks": self.fact("failing_checks"), "issued_at": self.fact("issued_at"),
                "ms": self.ms}


# --------------------------------------------------------------------------- asking


def ask_member(api: "LocalApi", member: Member, community_id: str | None,
               timeout: float = DEFAULT_TIMEOUT_SECONDS) -> MemberHealth:
    """One member's summary, judged. Never raises for what the member (or the route to
    it) did; only a dead local node ends the run (NodeNotRunning from the caller's side
    is still one member's "not heard from": the next member says the same)."""
    nonce = secrets.token_urlsafe(18)
    t0 = time.monotonic()
    try:
        reply = api.call(health.CAPABILITY, "1.0", {"params": {}, "input": {"nonce": nonce}},
                         node=member.node_id, timeout=timeout)
    except HearthNetError as exc:
        return MemberHealth(member, NOT_HEARD, _why_not_heard(exc), ms=_ms(t0))
    out = reply.get("output") if isinstance(reply, dict) else None
    verdict = health.verify_summary(out, node_id=member.node_id, community_id=community_id, nonce=nonce)
    if not verdict.verified:
        return MemberHealth(member, UNVERIFIED, verdict.reason, ms=_ms(t0))
    return MemberHealth(member, VERIFIED, summary=out, ms=_ms(t0))


def _why_not_heard(exc: HearthNetError) -> str:
    if exc.code == "not_found":
        return "not reachable: not a verified peer of this node now (or it has no node.health)"
    if exc.code == "timeout":
        return "no answer in time"
    return f"{exc.code}: {exc.message}"[:300]


def _ms(t0: float) -> float:
    return round((time.monotonic() - t0) * 1000, 1)


def ask_all(api: "LocalApi", members: list[Member], *, own_node_id: str, community_id: str | None,
            timeout: float = DEFAULT_TIMEOUT_SECONDS, progress: Progress | None = None) -> list[MemberHealth]:
    """Every member at once (up to MAX_PARALLEL in flight), in the members' order."""
    if not members:
        return []
    results: dict[str, MemberHealth] = {}
    with ThreadPoolExecutor(max_workers=min(MAX_PARALLEL, len(members))) as pool:
        futures = {pool.submit(ask_member, api, m, community_id, timeout): m for m in members}
        for fut in as_completed(futures):
            res = fut.result()
            res.is_self = res.member.node_id == own_node_id
            results[res.member.node_id] = res
            if progress is not None:
                progress(res)
    return [results[m.node_id] for m in members]


def members_of(api: "LocalApi") -> tuple[str, str | None, str | None, list[Member]]:
    """(our node id, community id, community name, current members) from the ledger's view."""
    out = api.output("community.members.list", {})
    members = [m for m in (Member.from_record(r) for r in out.get("members") or []) if m is not None]
    return str(out.get("node_id") or ""), out.get("community_id"), out.get("community_name"), members


def mesh_doctor(api: "LocalApi", *, timeout: float = DEFAULT_TIMEOUT_SECONDS,
                progress_factory: Callable[[int], Progress | None] | None = None) -> "MeshDoctorResult":
    own, community_id, name, members = members_of(api)
    progress = progress_factory(len(members)) if progress_factory is not None else None
    rows = ask_all(api, members, own_node_id=own, community_id=community_id, timeout=timeout,
                   progress=progress)
    rows.sort(key=lambda r: (not r.is_self, (r.member.display_name or "").lower(), r.member.node_id))
    return MeshDoctorResult(own, community_id, name, rows, timeout)


# --------------------------------------------------------------------------- the result


@dataclass
class MeshDoctorResult:
    node_id: str
    community_id: str | None
    community_name: str | None
    members: list[MemberHealth] = field(default_factory=list)
    timeout: float = DEFAULT_TIMEOUT_SECONDS

    def of_state(self, state: str) -> list[MemberHealth]:
        return [m for m in self.members if m.state == state]

    @property
    def unhealthy(self) -> list[MemberHealth]:
        return [m for m in self.of_state(VERIFIED) if not m.healthy]

    @property
    def exit_code(self) -> int:
        ok = all(m.state == VERIFIED for m in self.members) and not self.unhealthy
        return 0 if ok else 1

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.exit_code == 0, "node_id": self.node_id, "community_id": self.community_id,
                "timeout_seconds": self.timeout, "members": [m.to_dict() for m in self.members],
                "not_heard_from": [m.member.node_id for m in self.of_state(NOT_HEARD)],
                "counts": {"members": len(self.members), VERIFIED: len(self.of_state(VERIFIED)),
                           UNVERIFIED: len(self.of_state(UNVERIFIED)),
                           NOT_HEARD: len(self.of_state(NOT_HEARD)), "unhealthy": len(self.unhealthy)}}

    def human(self, out: "Output") -> None:
        ours = next((m.fact("event_log") for m in self.members if m.is_self), None)
        rows = [_row(out, m, ours) for m in self.members]
        c = self.to_dict()["counts"]
        title = (f"Mesh health of {self.community_name or self.community_id or 'this community'}: "
                 f"{c['members']} member(s), {c[VERIFIED]} verified, {c[UNVERIFIED]} unverified, "
                 f"{c[NOT_HEARD]} not heard from")
        out.table(("member", "up", "version", "online state", "sync lag", "events", "checks"), rows, title=title)
        if self.exit_code == 0:
            out.print(out.text("✔ every member answered with a verified summary and no failing check", "green"))
        else:
            out.print(out.text(f"✘ {c[UNVERIFIED]} unverified, {c[NOT_HEARD]} not heard from, "
                               f"{c['unhealthy']} with failing checks", "red"))


def _row(out: "Output", m: MemberHealth, ours: Any) -> list[Any]:
    from hearthnet.cli import render

    who = f"{m.member.display_name or '?'} {render.short_node_id(m.member.node_id)}"
    who += " (this node)" if m.is_self else ""
    if m.state == NOT_HEARD:
        return [who, out.text("down", "red"), "-", "-", "-", "-",
                out.text(f"not heard from: {_clip(m.reason)}", "red")]
    if m.state == UNVERIFIED:  # what it claims is not shown: only why it is not trusted
        return [who, out.text("unverified", "bold yellow"), "-", "-", "-", "-",
                out.text(f"summary not trusted: {_clip(m.reason)}", "yellow")]
    return [who, out.text("up", "green"), str(m.fact("version") or "-"),
            str(m.fact("online_state") or "n/a"), _sync_cell(m.fact("sync")),
            _events_cell(m.fact("event_log"), ours), _checks_cell(out, m.fact("failing_checks") or [])]


def _clip(text: str | None, limit: int = TABLE_REASON_CHARS) -> str:
    text = text or "?"
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _sync_cell(sync: Any) -> str:
    from hearthnet.cli import render

    if not isinstance(sync, dict) or not sync.get("peers"):
        return "no peers"
    lag = sync.get("lag_seconds")
    text = render.duration(lag) if isinstance(lag, (int, float)) else "never synced"
    failing = sync.get("failing") or []
    if failing:
        text += f", {len(failing)} peer(s) failing"
    return text


def _events_cell(log: Any, ours: Any) -> str:
    if not isinstance(log, dict) or not isinstance(log.get("count"), int):
        return "?"
    count = log["count"]
    if not isinstance(ours, dict) or not isinstance(ours.get("count"), int):
        return str(count)
    diff = count - ours["count"]
    return f"{count} (same)" if diff == 0 and log.get("head") == ours.get("head") else f"{count} ({diff:+d})"


def _checks_cell(out: "Output", failing: list[Any]) -> Any:
    if not failing:
        return out.text("ok", "green")
    lines = []
    for c in failing:
        if not isinstance(c, dict):
            continue
        mark = "⚠" if c.get("status") == "warn" else "✘"
        lines.append(f"{mark} {c.get('name')}: {str(c.get('message') or '').splitlines()[0] if c.get('message') else ''}")
        if c.get("fix"):
            lines.append(f"  → fix: {str(c['fix']).splitlines()[0]}")
    bad = any(isinstance(c, dict) and c.get("status") != "warn" for c in failing)
    return out.text("\n".join(lines), "red" if bad else "yellow")
