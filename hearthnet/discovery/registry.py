"""In-memory registry of verified peers (spec core-events-discovery §9.3).

Only verified peers live here: a record is accepted (and announced as `added`) once its
node manifest was fetched and passed `verify_node_manifest`, it belongs to our community,
it is not this node, and, when a membership check is wired in, its author is a member.
Nodes that were merely *seen* (an announcement, a cache entry) are tracked by the
discovery service, not here, so `all()` is always "peers we may talk to".

`last_seen` is the monotonic time of the last successful manifest verification, so
`prune_stale(90)` drops peers that have gone 90 s without a valid manifest, however
often they keep announcing themselves.
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime
from typing import Any, Callable, Literal, Mapping

from hearthnet.discovery.errors import DiscoveryError
from hearthnet.errors import IdentityError
from hearthnet.identity.keys import short_node_id
from hearthnet.identity.manifest import verify_node_manifest

log = logging.getLogger(__name__)

Source = Literal["mdns", "udp", "cache", "manual"]
SOURCES: tuple[str, ...] = ("mdns", "udp", "cache", "manual")
EventKind = Literal["added", "updated", "removed"]
DEFAULT_MAX_AGE_SECONDS = 90

# Fields whose change makes an `updated` event; last_seen / rtt alone do not (they change
# on every refresh and would flood subscribers with no news).
_NEWS_FIELDS = ("manifest", "display_name", "profile", "endpoints", "host", "port", "tls_fingerprint")


@dataclass(frozen=True)
class PeerRecord:
    node_id_full: str
    node_id_short: str
    display_name: str
    community_id: str
    profile: str
    endpoints: tuple[Mapping[str, Any], ...]
    manifest: dict[str, Any] | None
    last_seen: float  # monotonic, time of the last verified manifest
    rtt_ms: float | None
    source: Source  # how the peer was first found
    tls_fingerprint: str | None = None
    host: str = ""  # where we actually reached it (the manifest may say 0.0.0.0)
    port: int = 0

    @classmethod
    def from_manifest(cls, manifest: dict[str, Any], *, host: str, port: int, source: Source,
                      rtt_ms: float | None, now: float) -> "PeerRecord":
        """A record built from an (already verified) manifest. Raises DiscoveryError
        manifest_invalid when the manifest lacks what a record needs."""
        try:
            node_id = str(manifest["node_id"])
            return cls(
                node_id_full=node_id,
                node_id_short=short_node_id(node_id),
                display_name=str(manifest["display_name"]),
                community_id=str(manifest["community_id"]),
                profile=str(manifest["profile"]),
                endpoints=tuple(dict(e) for e in manifest["endpoints"]),
                manifest=manifest,
                last_seen=now,
                rtt_ms=rtt_ms,
                source=source,
                tls_fingerprint=tls_fingerprint_of(manifest),
                host=host,
                port=port,
            )
        except (KeyError, TypeError, ValueError, IdentityError) as exc:
            raise DiscoveryError("manifest_invalid", f"manifest from {host}:{port} is malformed: {exc}") from exc

    def to_json(self, now: float | None = None) -> dict[str, Any]:
        """JSON-ready summary (the manifest itself is left out: it is large and public)."""
        doc = asdict(self)
        doc.pop("manifest")
        doc["endpoints"] = [dict(e) for e in self.endpoints]
        doc["manifest_expires_at"] = (self.manifest or {}).get("expires_at")
        if now is not None:
            doc["last_seen_seconds_ago"] = round(max(0.0, now - self.last_seen), 1)
        return doc


def tls_fingerprint_of(manifest: Mapping[str, Any]) -> str | None:
    """The certificate fingerprint a peer publishes in its signed manifest (DESIGN.md §3).
    The contract has no fixed field for it, so accept it top-level or on an endpoint."""
    top = manifest.get("tls_fingerprint")
    if isinstance(top, str) and top:
        return top
    for ep in manifest.get("endpoints") or ():
        if isinstance(ep, Mapping):
            value = ep.get("tls_fingerprint") or ep.get("fingerprint")
            if isinstance(value, str) and value:
                return value
    return None


@dataclass(frozen=True)
class PeerEvent:
    kind: EventKind
    peer: PeerRecord


Subscriber = Callable[[PeerEvent], None]


@dataclass(eq=False)
class PeerRegistry:
    """Thread-safe (a zeroconf thread or the asyncio loop may call in); subscribers are
    called synchronously, after the lock is released, in subscription order."""

    our_node_id_full: str
    our_community_id: str
    clock: Callable[[], float] = time.monotonic
    is_member: Callable[[str], bool] | None = None  # community membership, when known
    wallclock: Callable[[], datetime] | None = None  # for manifest expiry; None = now
    _peers: dict[str, PeerRecord] = field(default_factory=dict, init=False, repr=False)
    _subscribers: list[Subscriber] = field(default_factory=list, init=False, repr=False)
    _lock: threading.RLock = field(default_factory=threading.RLock, init=False, repr=False)

    # ---------------------------------------------------------------- admission

    def check(self, rec: PeerRecord) -> None:
        """Raise DiscoveryError(manifest_invalid, reason=...) unless `rec` may be a peer."""
        if rec.manifest is None:
            raise DiscoveryError("manifest_invalid", f"{rec.node_id_short} has no verified manifest yet",
                                 reason="unverified")
        try:
            verify_node_manifest(rec.manifest, now=self.wallclock() if self.wallclock else None)
        except IdentityError as exc:
            raise DiscoveryError("manifest_invalid", exc.message, reason=exc.code) from exc
        if rec.manifest.get("node_id") != rec.node_id_full:
            raise DiscoveryError("manifest_invalid", "record and manifest name different nodes", reason="mismatch")
        if rec.node_id_full == self.our_node_id_full:
            raise DiscoveryError("manifest_invalid", "that is this node itself", reason="self")
        if rec.community_id != self.our_community_id or rec.manifest.get("community_id") != self.our_community_id:
            raise DiscoveryError("manifest_invalid", f"{rec.node_id_short} belongs to another community",
                                 reason="foreign_community")
        if self.is_member is not None and not self.is_member(rec.node_id_full):
            raise DiscoveryError("manifest_invalid", f"{rec.node_id_short} is not a member of this community",
                                 reason="not_member")

    def upsert(self, rec: PeerRecord) -> bool:
        """Add or refresh a verified peer; True when it is new. Raises DiscoveryError
        (manifest_invalid) for records that may not be peers."""
        self.check(rec)
        with self._lock:
            old = self._peers.get(rec.node_id_full)
            if old is not None:
                rec = replace(rec, source=old.source)  # "how found" is the first way
            self._peers[rec.node_id_full] = rec
        if old is None:
            self._emit(PeerEvent("added", rec))
        elif any(getattr(old, f) != getattr(rec, f) for f in _NEWS_FIELDS):
            self._emit(PeerEvent("updated", rec))
        return old is None

    # ---------------------------------------------------------------- queries

    def get(self, node_id_full: str) -> PeerRecord | None:
        with self._lock:
            return self._peers.get(node_id_full)

    def find_short(self, node_id_short: str) -> PeerRecord | None:
        with self._lock:
            return next((p for p in self._peers.values() if p.node_id_short == node_id_short), None)

    def all(self) -> list[PeerRecord]:
        with self._lock:
            return sorted(self._peers.values(), key=lambda p: p.node_id_full)

    def for_community(self, community_id: str) -> list[PeerRecord]:
        return [p for p in self.all() if p.community_id == community_id]

    def __len__(self) -> int:
        with self._lock:
            return len(self._peers)

    # ---------------------------------------------------------------- removal

    def remove(self, node_id_full: str) -> PeerRecord | None:
        with self._lock:
            rec = self._peers.pop(node_id_full, None)
        if rec is not None:
            self._emit(PeerEvent("removed", rec))
        return rec

    def prune_stale(self, max_age_seconds: float = DEFAULT_MAX_AGE_SECONDS) -> int:
        """Remove peers whose last verified manifest is older than `max_age_seconds`."""
        cutoff = self.clock() - max_age_seconds
        with self._lock:
            stale = [p for p in self._peers.values() if p.last_seen < cutoff]
            for p in stale:
                del self._peers[p.node_id_full]
        for p in stale:
            self._emit(PeerEvent("removed", p))
        return len(stale)

    # ---------------------------------------------------------------- events

    def subscribe(self, callback: Subscriber) -> Callable[[], None]:
        """Call `callback(PeerEvent)` on every change; returns the unsubscribe function."""
        with self._lock:
            self._subscribers.append(callback)

        def unsubscribe() -> None:
            with self._lock:
                if callback in self._subscribers:
                    self._subscribers.remove(callback)

        return unsubscribe

    def _emit(self, event: PeerEvent) -> None:
        with self._lock:
            subscribers = list(self._subscribers)
        for callback in subscribers:
            try:
                callback(event)
            except Exception:  # one broken subscriber must not starve the others
                log.exception("peer event subscriber %r failed on %s %s", callback, event.kind,
                              event.peer.node_id_short)
