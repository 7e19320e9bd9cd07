"""The discovery orchestrator (spec core-events-discovery §9; DESIGN.md §2 "discovery").

Starts the enabled mechanisms (UDP multicast, mDNS), the peer cache and manual peers;
turns every announcement for our community into a manifest fetch (`fetch_manifest` is
injected: in production it speaks TLS with pinning), verifies the manifest and upserts the
registry. Every TICK_SECONDS it refetches manifests about to expire, prunes peers that
went PRUNE_AFTER_SECONDS without a valid manifest, retries cached and manual peers and
rescans the interfaces. One mechanism failing is logged and shown by `diagnose()`; the
others keep working.
"""
from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Coroutine, Sequence

from hearthnet.config import Config, DiscoveryConfig
from hearthnet.constants import MANIFEST_TTL_SECONDS
from hearthnet.discovery import diagnose as diagnose_mod
from hearthnet.discovery import interfaces as ifsel
from hearthnet.ratelog import RateLimitedLog
from hearthnet.discovery.cache import CachedPeer, PeerCache, format_address
from hearthnet.discovery.errors import DiscoveryError
from hearthnet.discovery.registry import PeerRecord, PeerRegistry, Source
from hearthnet.discovery.udp import (
    LAN_TTL,
    UdpAnnouncer,
    UdpListener,
    UdpSighting,
    announce_interval,
    build_packet,
    non_default_warning,
)
from hearthnet.errors import IdentityError
from hearthnet.identity.keys import KeyPair, short_node_id
from hearthnet.identity.manifest import parse_rfc3339, utcnow, verify_node_manifest

if TYPE_CHECKING:
    from hearthnet.discovery.mdns import MdnsAnnouncer, MdnsBrowser

log = logging.getLogger(__name__)

FETCH_TIMEOUT_SECONDS = 10.0
TICK_SECONDS = 10.0
REFRESH_BEFORE_EXPIRY = timedelta(seconds=10)
PRUNE_AFTER_SECONDS = 90.0
PRUNE_AFTER_OFFLINE_SECONDS = 30.0  # emergency mode: dead peers must go quickly
CACHE_RETRY_SECONDS = 60.0
RESCAN_SECONDS = 30.0
MECHANISM_RETRY_SECONDS = 60.0
FOREIGN_MEMORY_SECONDS = 600.0  # sightings (foreign nodes, unanswered targets) kept this long
MAX_TRACKED = 1024  # announcements are unsigned: spoofed sources must not grow memory unbounded
MAX_CONCURRENT_FETCHES = 16
BACKOFF_FIRST_SECONDS = 5.0
BACKOFF_MAX_SECONDS = 60.0

FetchManifest = Callable[[str, int], Awaitable[dict[str, Any]]]
CapsProvider = Callable[[], Sequence[str]]


@dataclass
class Mechanism:
    name: str
    enabled: bool
    up: bool = False
    error: str | None = None
    code: str | None = None
    interfaces: list[str] = field(default_factory=list)
    last_attempt: float | None = None

    def to_json(self) -> dict[str, Any]:
        return {"enabled": self.enabled, "up": self.up, "error": self.error, "code": self.code,
                "interfaces": list(self.interfaces)}


@dataclass
class Target:
    """A host:port some mechanism pointed us at; becomes a peer once its manifest verifies."""

    host: str
    port: int
    first_source: Source
    sources: set[str] = field(default_factory=set)
    node_short: str | None = None  # as announced; the manifest must match it
    node_id_full: str | None = None
    manual: bool = False
    last_seen: float = 0.0
    in_flight: bool = False
    failures: int = 0
    next_attempt: float = 0.0
    attempts: int = 0
    last_ok: float | None = None
    error: DiscoveryError | None = None
    is_self: bool = False
    foreign: bool = False

    @property
    def address(self) -> str:
        return format_address(self.host, self.port)

    def to_json(self) -> dict[str, Any]:
        err = self.error
        return {"address": self.address, "sources": sorted(self.sources), "node_id_short": self.node_short,
                "manual": self.manual, "attempts": self.attempts, "error": err.message if err else None,
                "code": err.code if err else None, "self": self.is_self, "foreign": self.foreign}


@dataclass
class ForeignNode:
    node_short: str
    community_short: str
    host: str
    sources: set[str]
    last_seen: float


class Discovery:
    def __init__(
        self,
        config: DiscoveryConfig | Config,
        our_kp: KeyPair,
        our_community_id: str,
        transport_port: int,
        display_name: str,
        profile: str,
        caps_provider: CapsProvider,
        fetch_manifest: FetchManifest,
        registry: PeerRegistry,
        cache: PeerCache | None = None,
        data_dir: Path | None = None,
        *,
        udp_ttl: int = LAN_TTL,  # tests use 0: datagrams then never leave this host
        clock: Callable[[], float] = time.monotonic,
        wallclock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.config = config.discovery if isinstance(config, Config) else config
        if cache is None and data_dir is None:
            raise ValueError("Discovery needs a PeerCache or the data_dir to keep one in")
        self.cache = cache if cache is not None else PeerCache.for_data_dir(data_dir)  # type: ignore[arg-type]
        self.registry = registry
        self._kp = our_kp
        self._community_id = our_community_id
        self._node_short = our_kp.node_id_short
        self._community_short = short_node_id(our_community_id)
        self._port, self._display_name, self._profile = transport_port, display_name, profile
        self._caps_provider, self._fetch_manifest = caps_provider, fetch_manifest
        self._udp_ttl, self._clock, self._wallclock = udp_ttl, clock, wallclock
        self.mechanisms = {
            "udp": Mechanism("udp", self.config.udp_enabled),
            "mdns": Mechanism("mdns", self.config.mdns_enabled),
            "cache": Mechanism("cache", True),
        }
        self._selection = ifsel.Selection(())
        self._targets: dict[tuple[str, int], Target] = {}
        self._foreign: dict[str, ForeignNode] = {}
        self._udp: tuple[UdpListener, UdpAnnouncer] | None = None
        self._mdns: tuple[Any, MdnsAnnouncer, MdnsBrowser] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._last_caps: list[str] = []
        self._offline = False
        self._started_at: float | None = None
        self._due = {"cache": 0.0, "rescan": 0.0}
        self._ratelog = RateLimitedLog(log, interval=300.0, clock=clock)
        self._fetch_slots = asyncio.Semaphore(MAX_CONCURRENT_FETCHES)

    # ================================================================ lifecycle

    async def start(self) -> None:
        self._started_at = self._clock()
        warning = non_default_warning(self.config.udp_multicast_group, self.config.udp_port)
        if warning and self.config.udp_enabled:
            log.warning(warning)
        self._selection = self._select()
        if self.config.udp_enabled:
            await self._start_udp()
        if self.config.mdns_enabled:
            await self._start_mdns()
        self._retry_cache()
        self._spawn(self._tick_loop(), "discovery tick")
        log.info("discovery started: udp=%s mdns=%s interfaces=%s", self._state("udp"), self._state("mdns"),
                 self._selection.describe())

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._stop_udp()
        await self._stop_mdns()
        self._started_at = None

    async def __aenter__(self) -> "Discovery":
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def _spawn(self, coro: Coroutine[Any, Any, Any], what: str) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro, name=what)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("discovery task %s died", task.get_name(), exc_info=task.exception())

    def _state(self, name: str) -> str:
        mech = self.mechanisms[name]
        return "off" if not mech.enabled else ("up" if mech.up else f"down ({mech.error})")

    # ================================================================ mechanisms

    def _select(self) -> ifsel.Selection:
        selection = ifsel.select(self.config.interfaces)
        for name in selection.missing:
            self._ratelog.warning(f"iface:{name}", "configured discovery interface %s does not exist or has no "
                                  "IPv4 address; it is not used", name)
        return selection

    def _mark(self, name: str, *, up: bool, error: BaseException | str | None = None,
              interfaces: Sequence[str] = ()) -> None:
        mech = self.mechanisms[name]
        mech.up, mech.interfaces, mech.last_attempt = up, list(interfaces), self._clock()
        mech.error = None if error is None else (error.message if isinstance(error, DiscoveryError) else str(error))
        mech.code = error.code if isinstance(error, DiscoveryError) else None
        if error is not None:  # retried every minute: say it once per error, not every time
            self._ratelog.warning(f"mech:{name}:{mech.error}", "discovery %s: %s", name, mech.error)

    def _no_interface_error(self) -> str:
        if self._selection.strict:
            return f"none of the configured interfaces ({', '.join(self.config.interfaces)}) has an IPv4 address"
        return "this machine has no IPv4 address"

    async def _start_udp(self) -> None:
        addrs = self._selection.addrs
        if not addrs:
            self._mark("udp", up=False, error=self._no_interface_error())
            return
        cfg = self.config
        listener = UdpListener(self._node_short, self._on_udp, group=cfg.udp_multicast_group, port=cfg.udp_port,
                               strict=self._selection.strict, clock=self._clock)
        announcer = UdpAnnouncer(self._udp_packet, self._udp_interval, group=cfg.udp_multicast_group,
                                 port=cfg.udp_port, ttl=self._udp_ttl, clock=self._clock)
        errors = list((await listener.sync(addrs)).values()) + list((await announcer.sync(addrs)).values())
        if not listener.interfaces or not announcer.interfaces:
            listener.close()
            announcer.close()
            self._mark("udp", up=False, error=_first_error(errors))
            return
        self._udp = (listener, announcer)
        self._spawn(announcer.run(), "udp announcer")
        self._mark("udp", up=True, error=_first_error(errors) if errors else None,
                   interfaces=[f"{a.name} ({a.ip})" for a in listener.interfaces])

    def _stop_udp(self) -> None:
        if self._udp is not None:
            for part in self._udp:
                part.close()
            self._udp = None

    async def _start_mdns(self) -> None:
        # zeroconf is imported only when mDNS runs: a node with it off (or a process that
        # never starts it) does not carry its ~3.5 MiB (README "Lean processes").
        from zeroconf import Error as ZeroconfError

        from hearthnet.discovery.mdns import MdnsAnnouncer, MdnsBrowser, open_zeroconf

        try:
            azc = open_zeroconf(self._selection)
        except DiscoveryError as exc:
            self._mark("mdns", up=False, error=exc)
            return
        announcer = browser = None
        try:
            announcer = MdnsAnnouncer(azc, node_id_short=self._node_short, display_name=self._display_name,
                                      community_id_short=self._community_short, profile=self._profile,
                                      port=self._port, caps=self._caps(), addresses=ifsel.advertised(self._selection))
            browser = MdnsBrowser(azc, our_node_short=self._node_short, our_community_short=self._community_short,
                                  selection=self._selection, on_service=self._on_mdns, on_foreign=self._on_mdns_foreign)
            await announcer.start()
            await browser.start()
        except (DiscoveryError, OSError, RuntimeError, ZeroconfError) as exc:
            if browser is not None:
                await browser.stop()
            await azc.async_close()
            self._mark("mdns", up=False, error=exc)
            return
        self._mdns = (azc, announcer, browser)
        self._mark("mdns", up=True, interfaces=[f"{a.name} ({a.ip})" for a in self._selection.addrs])

    async def _stop_mdns(self) -> None:
        if self._mdns is None:
            return
        azc, announcer, browser = self._mdns
        self._mdns = None
        await browser.stop()
        try:
            await announcer.stop()  # sends the mDNS goodbye
        except (OSError, RuntimeError) as exc:
            log.warning("mDNS goodbye not sent: %s", exc)
        await azc.async_close()

    async def _rescan(self) -> None:
        """Interfaces come and go (Wi-Fi, DHCP): follow them, and retry failed mechanisms."""
        fresh = self._select()
        changed = fresh.addrs != self._selection.addrs
        self._selection = fresh
        now = self._clock()
        await self._rescan_udp(changed, now)
        mdns = self.mechanisms["mdns"]
        if mdns.enabled and (changed or (not mdns.up and now - (mdns.last_attempt or 0) >= MECHANISM_RETRY_SECONDS)):
            await self._stop_mdns()
            await self._start_mdns()

    async def _rescan_udp(self, changed: bool, now: float) -> None:
        udp = self.mechanisms["udp"]
        if not udp.enabled:
            return
        if self._udp is None:
            if changed or now - (udp.last_attempt or 0) >= MECHANISM_RETRY_SECONDS:
                await self._start_udp()
            return
        if changed:
            self._stop_udp()
            for task in [t for t in self._tasks if t.get_name() == "udp announcer"]:
                task.cancel()
            await self._start_udp()

    # ================================================================ announcements

    def _caps(self) -> list[str]:
        try:
            self._last_caps = [str(c) for c in self._caps_provider()]
        except Exception:  # injected: a failing provider must not silence the node
            log.exception("capability provider failed; announcing the last known list")
        return list(self._last_caps)

    def _udp_packet(self) -> bytes:
        return build_packet(self._node_short, self._community_short, self._port, self._caps())

    def _udp_interval(self) -> float:
        return announce_interval(len(self.registry), self._offline)

    async def caps_changed(self) -> None:
        """Our capabilities changed: refresh the mDNS TXT record and announce now."""
        if self._mdns is not None:
            await self._mdns[1].update(self._caps())
        if self._udp is not None:
            self._udp[1].poke()

    def set_offline(self, offline: bool) -> None:
        """Emergency mode: announce at the active rate and prune dead peers after 30 s."""
        self._offline = offline
        if self._udp is not None:
            self._udp[1].poke()

    # ================================================================ sightings

    def _on_udp(self, s: UdpSighting) -> None:
        a = s.announcement
        if self._sighted(s.host, a.port, "udp", a.node, a.community) and self._udp is not None:
            self._udp[1].poke()  # answer a newcomer now rather than in up to 30 s

    def _on_mdns(self, host: str, port: int, txt: dict[str, str], changed: bool) -> None:
        self._sighted(host, port, "mdns", txt["node"], txt["community"], force=changed)

    def _on_mdns_foreign(self, node: str, community: str, host: str) -> None:
        self._note_foreign(node, community, host, "mdns")

    def _sighted(self, host: str, port: int, source: Source, node: str, community: str, force: bool = False) -> bool:
        """Handle one announcement; True when it came from a node that is not a peer yet."""
        if node == self._node_short:
            return False
        if community != self._community_short:
            self._note_foreign(node, community, host, source)
            return False
        if not self._room_for(host, port):
            return False
        target = self._target(host, port, source)
        target.node_short = node
        peer = self.registry.find_short(node)
        if peer is not None and not force:
            moved = (peer.host, peer.port) != (host, port)
            # A peer that refreshes fine stays where it is (multi-homed peers would
            # otherwise flip between addresses); one that stopped answering may have moved.
            if not moved or self._clock() - peer.last_seen < MANIFEST_TTL_SECONDS:
                return False
        self._schedule_fetch(target, force=force)
        return peer is None

    def _note_foreign(self, node: str, community: str, host: str, source: str) -> None:
        known = self._foreign.get(node)
        if known is None and len(self._foreign) >= MAX_TRACKED:
            return
        if known is None:
            log.info("node %s at %s belongs to community %s, not ours; ignoring it", node, host, community)
            known = self._foreign[node] = ForeignNode(node, community, host, set(), 0.0)
        known.community_short, known.host, known.last_seen = community, host, self._clock()
        known.sources.add(source)

    def _room_for(self, host: str, port: int) -> bool:
        if (host, port) in self._targets or len(self._targets) < MAX_TRACKED:
            return True
        self._ratelog.warning("targets-full", "ignoring announcements from new addresses: already tracking %d "
                              "(spoofed traffic?)", len(self._targets))
        return False

    def _target(self, host: str, port: int, source: Source) -> Target:
        """The tracked target for host:port, created on first sight."""
        target = self._targets.get((host, port))
        if target is None:
            target = self._targets[(host, port)] = Target(host, port, source)
        target.sources.add(source)
        target.last_seen = self._clock()
        return target

    # ================================================================ manifests

    def _schedule_fetch(self, target: Target, force: bool = False) -> None:
        if target.in_flight or target.is_self:
            return
        if not force and self._clock() < target.next_attempt:
            return
        target.in_flight = True
        self._spawn(self._fetch(target), f"manifest {target.address}")

    async def _fetch(self, target: Target) -> None:
        target.attempts += 1
        try:
            manifest, rtt_ms = await self._get_manifest(target)
            self._accept(target, manifest, rtt_ms)
        except DiscoveryError as exc:
            self._failed(target, exc)
        finally:
            target.in_flight = False

    async def _get_manifest(self, target: Target) -> tuple[dict[str, Any], float]:
        async with self._fetch_slots:
            return await self._get_manifest_now(target)

    async def _get_manifest_now(self, target: Target) -> tuple[dict[str, Any], float]:
        started = self._clock()
        try:
            manifest = await asyncio.wait_for(self._fetch_manifest(target.host, target.port), FETCH_TIMEOUT_SECONDS)
        except DiscoveryError:
            raise
        except asyncio.TimeoutError:
            raise DiscoveryError("manifest_fetch_failed", f"no answer within {FETCH_TIMEOUT_SECONDS:g} s") from None
        except Exception as exc:  # injected fetcher: any failure means "this peer is unreachable"
            raise DiscoveryError("manifest_fetch_failed", _describe(exc)) from exc
        if not isinstance(manifest, dict):
            raise DiscoveryError("manifest_invalid", "the manifest is not a JSON object")
        return manifest, round((self._clock() - started) * 1000.0, 1)

    def _accept(self, target: Target, manifest: dict[str, Any], rtt_ms: float) -> None:
        try:
            verify_node_manifest(manifest, now=self._wallclock())
        except IdentityError as exc:
            raise DiscoveryError("manifest_invalid", exc.message, reason=exc.code) from exc
        node_id = manifest["node_id"]
        short = short_node_id(node_id)
        if target.node_short and short != target.node_short:
            raise DiscoveryError("manifest_invalid", f"announced as {target.node_short} but serves the manifest of "
                                 f"{short}", reason="mismatch")
        target.node_short, target.node_id_full = short, node_id
        if node_id == self._kp.node_id_full:
            target.is_self = True  # e.g. a manual entry pointing at ourselves: never retried
            return
        self._check_community(target, manifest, short)
        rec = PeerRecord.from_manifest(manifest, host=target.host, port=target.port, source=target.first_source,
                                       rtt_ms=rtt_ms, now=self._clock())
        self.registry.upsert(rec)
        target.failures, target.next_attempt, target.error = 0, 0.0, None
        target.last_ok = self._clock()
        self._remember(rec, target)

    def _check_community(self, target: Target, manifest: dict[str, Any], short: str) -> None:
        community = manifest.get("community_id")
        if community == self._community_id:
            return
        target.foreign = True
        try:
            community_short = short_node_id(str(community))
        except IdentityError:
            community_short = "an unknown community"
        self._note_foreign(short, community_short, target.host, target.first_source)
        raise DiscoveryError("manifest_invalid", f"{short} belongs to community {community_short}, not ours",
                             reason="foreign_community")

    def _failed(self, target: Target, exc: DiscoveryError) -> None:
        target.failures += 1
        target.error = exc
        backoff = min(BACKOFF_MAX_SECONDS, BACKOFF_FIRST_SECONDS * 2 ** (target.failures - 1))
        target.next_attempt = self._clock() + backoff
        self._ratelog.warning(f"fetch:{target.address}:{exc.code}", "peer %s (%s): %s: %s", target.address,
                              target.node_short or "unknown node", exc.code, exc.message)

    def _remember(self, rec: PeerRecord, target: Target) -> None:
        how = "manual" if target.manual else rec.source
        try:
            self.cache.record_verified(rec.node_id_full, rec.host, rec.port, rec.tls_fingerprint, how)
        except OSError as exc:  # a full disk must not cost us the peer
            self._mark("cache", up=False, error=f"cannot write {self.cache.path}: {exc.strerror or exc}")
            return
        self._mark("cache", up=True)

    # ================================================================ cache & manual peers

    def _retry_cache(self) -> None:
        self._due["cache"] = self._clock() + CACHE_RETRY_SECONDS
        entries = self.cache.load()
        self.mechanisms["cache"].up = True
        for entry in entries:
            self._retry_entry(entry)

    def _retry_entry(self, entry: CachedPeer) -> None:
        target = self._target(entry.host, entry.port, "manual" if entry.manual else "cache")
        target.manual = target.manual or entry.manual
        peer = self.registry.get(entry.node_id) if entry.node_id else None
        if peer is not None and (peer.host, peer.port) == (entry.host, entry.port):
            return
        self._schedule_fetch(target)

    def retry_refused(self) -> None:
        """Membership changed: fetch again every node that was refused as a non-member."""
        for target in list(self._targets.values()):
            if target.error is not None and target.error.details.get("reason") == "not_member":
                self._schedule_fetch(target, force=True)

    async def add_manual(self, host: str, port: int) -> CachedPeer:
        """`hearthnet peer add HOST:PORT`: remember it and try it right away."""
        entry = self.cache.add_manual(host, port)
        target = self._target(entry.host, entry.port, "manual")
        target.manual = True
        self._schedule_fetch(target, force=True)
        return entry

    # ================================================================ periodic work

    async def _tick_loop(self) -> None:
        while True:
            await asyncio.sleep(TICK_SECONDS)
            try:
                await self.tick()
            except Exception:  # a bug here must not end discovery for the node's lifetime
                log.exception("discovery tick failed")

    async def tick(self) -> None:
        self._refresh_expiring()
        removed = self.registry.prune_stale(PRUNE_AFTER_OFFLINE_SECONDS if self._offline else PRUNE_AFTER_SECONDS)
        if removed:
            log.info("pruned %d peer(s) without a valid manifest", removed)
        now = self._clock()
        if now >= self._due["cache"]:
            self._retry_cache()
        if now >= self._due["rescan"]:
            self._due["rescan"] = now + RESCAN_SECONDS
            await self._rescan()
        self._forget_old(now)

    def _refresh_expiring(self) -> None:
        soon = self._wallclock() + REFRESH_BEFORE_EXPIRY
        for peer in self.registry.all():
            try:
                expires = parse_rfc3339((peer.manifest or {}).get("expires_at", ""))
            except ValueError:
                expires = soon  # unreadable: treat as expiring
            target = self._targets.get((peer.host, peer.port))
            if expires <= soon and target is not None:
                self._schedule_fetch(target)

    def _forget_old(self, now: float) -> None:
        """Drop sightings nobody repeated for FOREIGN_MEMORY_SECONDS (manual entries,
        live peers and fetches in flight stay)."""
        for node in [n for n, f in self._foreign.items() if now - f.last_seen > FOREIGN_MEMORY_SECONDS]:
            del self._foreign[node]
        for key, t in list(self._targets.items()):
            if now - t.last_seen > FOREIGN_MEMORY_SECONDS and not (t.manual or t.in_flight or self._is_live_peer(t)):
                del self._targets[key]

    # ================================================================ introspection

    def diagnose(self) -> list[str]:
        """Plain-language reasons why peers are missing (see discovery/diagnose.py)."""
        return diagnose_mod.diagnose(self)

    def status(self) -> dict[str, Any]:
        return diagnose_mod.status(self)

    def _is_live_peer(self, t: Target) -> bool:
        peer = self.registry.get(t.node_id_full) if t.node_id_full else None
        return peer is not None and (peer.host, peer.port) == (t.host, t.port)


def _first_error(errors: Sequence[Exception]) -> Exception | str:
    if not errors:
        return "no interface could be used"
    in_use = [e for e in errors if isinstance(e, DiscoveryError) and e.code == "socket_in_use"]
    return in_use[0] if in_use else errors[0]


def _describe(exc: BaseException) -> str:
    """OSError texts ("Cannot connect to host ...") speak for themselves; others need their type."""
    text = str(exc)
    if isinstance(exc, OSError) and exc.strerror and text.startswith("[Errno"):
        return exc.strerror  # "Connection refused", without the errno noise
    if isinstance(exc, OSError) and text:
        return text
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
