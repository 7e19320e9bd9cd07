"""mDNS / DNS-SD announce + browse with python-zeroconf (spec core-events-discovery §9.1).

Service type `_hearthnet._tcp.local.`, instance `<display_name>-<XXXX>` (XXXX = the first
four characters of the short node id after `ed25519:`), TXT keys v, node, community,
profile, caps (≤ 200 bytes, whole names dropped from the end), manifest_url,
contract_version.

One AsyncZeroconf per process is shared by announcer and browser. With configured
interfaces it is restricted to their IPv4 addresses (`interfaces=[...]`), so queries and
answers only leave through those; `()` keeps zeroconf's default of all interfaces.
"""
from __future__ import annotations

import asyncio
import logging
import re
import socket
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping, Sequence

from zeroconf import (
    BadTypeInNameException,
    Error as ZeroconfError,
    InterfaceChoice,
    IPVersion,
    NonUniqueNameException,
    ServiceStateChange,
    Zeroconf,
)
from zeroconf.asyncio import AsyncServiceBrowser, AsyncServiceInfo, AsyncZeroconf

from hearthnet.discovery.errors import DiscoveryError
from hearthnet.discovery.interfaces import Selection, best_host
from hearthnet.discovery.udp import IP_MULTICAST_ALL
from hearthnet.identity.keys import PREFIX, SHORT_ID_RE
from hearthnet.version import CONTRACT_VERSION

log = logging.getLogger(__name__)

SERVICE_TYPE = "_hearthnet._tcp.local."
TXT_VERSION = "1"
CAPS_MAX_BYTES = 200
INSTANCE_MAX_BYTES = 63  # a DNS label
RESOLVE_TIMEOUT_MS = 3000
_UNSAFE_LABEL = re.compile(r"[.\x00-\x1f\x7f]+")

OnService = Callable[[str, int, dict[str, str], bool], None]  # host, port, txt, changed
OnForeign = Callable[[str, str, str], None]  # node short, community short, host


# --------------------------------------------------------------------------- pure helpers


def short_suffix(node_id_short: str) -> str:
    """`ed25519:ABCD-EFGH-...` -> `ABCD` (the prefix is the same for every node)."""
    return node_id_short.removeprefix(PREFIX)[:4]


def instance_name(display_name: str, node_id_short: str) -> str:
    """`<display_name>-<XXXX>`, made safe for one DNS label: dots (label separators)
    and control characters become '-', and the name is cut to 63 bytes."""
    suffix = "-" + short_suffix(node_id_short)
    base = _UNSAFE_LABEL.sub("-", display_name.strip()) or "hearthnet"
    room = INSTANCE_MAX_BYTES - len(suffix.encode())
    encoded = base.encode("utf-8")[:room]
    return encoded.decode("utf-8", errors="ignore").rstrip() + suffix


def truncate_caps(caps: Iterable[str], limit: int = CAPS_MAX_BYTES) -> str:
    """Comma list of at most `limit` bytes; whole names are dropped, never cut."""
    out: list[str] = []
    for name in caps:
        if len(",".join([*out, name]).encode("utf-8")) > limit:
            break
        out.append(name)
    return ",".join(out)


def build_txt(*, node_id_short: str, community_id_short: str, profile: str, caps: Iterable[str],
              manifest_url: str) -> dict[str, str]:
    return {
        "v": TXT_VERSION,
        "node": node_id_short,
        "community": community_id_short,
        "profile": profile,
        "caps": truncate_caps(caps),
        "manifest_url": manifest_url,
        "contract_version": CONTRACT_VERSION,
    }


def parse_txt(properties: Mapping[bytes | str, bytes | str | None]) -> dict[str, str]:
    """zeroconf's raw TXT mapping -> str dict; undecodable entries are left out."""
    out: dict[str, str] = {}
    for key, value in properties.items():
        try:
            k = key.decode("utf-8") if isinstance(key, bytes) else key
            v = value.decode("utf-8") if isinstance(value, bytes) else (value or "")
        except UnicodeDecodeError:
            continue
        out[k] = v
    return out


def manifest_url(host: str, port: int) -> str:
    return f"https://{host}:{port}/manifest"


# --------------------------------------------------------------------------- zeroconf


def _hear_only_our_interfaces(azc: AsyncZeroconf) -> None:
    """zeroconf's shared listen socket is bound to *:5353; on Linux it would also hear
    mDNS arriving on interfaces where some other program joined 224.0.0.251. With a
    strict interface list, limit it to the memberships zeroconf made itself."""
    sock = getattr(azc.zeroconf.engine, "_listen_socket", None)
    if not isinstance(sock, socket.socket):
        log.debug("zeroconf listen socket not found; cannot set IP_MULTICAST_ALL")
        return
    try:
        sock.setsockopt(socket.IPPROTO_IP, IP_MULTICAST_ALL, 0)
    except OSError as exc:
        log.debug("IP_MULTICAST_ALL not applied to the mDNS socket: %s", exc.strerror)


def open_zeroconf(selection: Selection) -> AsyncZeroconf:
    """Must be called inside the running event loop (zeroconf then uses it)."""
    if selection.strict and not selection.addrs:
        raise DiscoveryError("mdns_unavailable", "none of the configured interfaces has an IPv4 address")
    choice: Any = [a.ip for a in selection.addrs] if selection.strict else InterfaceChoice.All
    try:
        azc = AsyncZeroconf(interfaces=choice, ip_version=IPVersion.V4Only)
    except (OSError, RuntimeError, ZeroconfError) as exc:
        raise DiscoveryError("mdns_unavailable", f"cannot open mDNS on port 5353: {exc}") from exc
    if selection.strict:
        _hear_only_our_interfaces(azc)
    return azc


# --------------------------------------------------------------------------- announcer


class MdnsAnnouncer:
    def __init__(self, azc: AsyncZeroconf, *, node_id_short: str, display_name: str, community_id_short: str,
                 profile: str, port: int, caps: Iterable[str], addresses: Sequence[str]) -> None:
        if not addresses:
            raise DiscoveryError("mdns_unavailable", "no IPv4 address to announce")
        self._azc = azc
        self._fields = dict(node_id_short=node_id_short, community_id_short=community_id_short, profile=profile,
                            manifest_url=manifest_url(addresses[0], port))
        self._name = instance_name(display_name, node_id_short)
        # A per-node host name, so several nodes on one machine do not fight over it.
        self._server = f"hn-{short_suffix(node_id_short).lower()}-{node_id_short[-4:].lower()}.local."
        self._port, self._addresses = port, list(addresses)
        self.info = self._info(list(caps), f"{self._name}.{SERVICE_TYPE}")
        self.registered = False

    def _info(self, caps: list[str], name: str) -> AsyncServiceInfo:
        return AsyncServiceInfo(SERVICE_TYPE, name, port=self._port,
                                properties=build_txt(caps=caps, **self._fields), server=self._server,
                                parsed_addresses=self._addresses)

    @property
    def txt(self) -> dict[str, str]:
        return parse_txt(self.info.properties)

    async def start(self) -> None:
        try:
            await self._azc.async_register_service(self.info, allow_name_change=True)
        except (NonUniqueNameException, BadTypeInNameException, ZeroconfError, OSError) as exc:
            raise DiscoveryError("mdns_unavailable", f"cannot register {self._name}: {exc}") from exc
        self.registered = True

    async def update(self, caps: Iterable[str]) -> bool:
        """Refresh the TXT record with new capability names; True when it changed."""
        # Keep the name: zeroconf may have de-duplicated it at registration.
        fresh = self._info(list(caps), self.info.name)
        if fresh.properties == self.info.properties:
            return False
        self.info = fresh
        if self.registered:
            await self._azc.async_update_service(self.info)
        return True

    async def stop(self) -> None:
        if self.registered:
            self.registered = False
            await self._azc.async_unregister_service(self.info)


# --------------------------------------------------------------------------- browser


@dataclass
class MdnsStats:
    resolved: int = 0
    own: int = 0
    foreign: int = 0
    ours: int = 0
    bad_txt: int = 0


class MdnsBrowser:
    """Calls `on_service(host, port, txt, changed)` for services of our community and
    `on_foreign(node, community, host)` for everyone else's; our own is ignored."""

    def __init__(self, azc: AsyncZeroconf, *, our_node_short: str, our_community_short: str, selection: Selection,
                 on_service: OnService, on_foreign: OnForeign | None = None) -> None:
        self._azc = azc
        self._ours, self._community = our_node_short, our_community_short
        self._selection = selection
        self._on_service, self._on_foreign = on_service, on_foreign
        self._browser: AsyncServiceBrowser | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.stats = MdnsStats()

    async def start(self) -> None:
        self._browser = AsyncServiceBrowser(self._azc.zeroconf, [SERVICE_TYPE], handlers=[self._on_change])

    async def stop(self) -> None:
        if self._browser is not None:
            await self._browser.async_cancel()
            self._browser = None
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def _on_change(self, zeroconf: Zeroconf, service_type: str, name: str, state_change: ServiceStateChange) -> None:
        # zeroconf calls this on our loop; resolution is async, so hand it to a task.
        if state_change in (ServiceStateChange.Added, ServiceStateChange.Updated):
            task = asyncio.ensure_future(self._resolve(service_type, name, state_change is ServiceStateChange.Updated))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _resolve(self, service_type: str, name: str, changed: bool) -> None:
        info = AsyncServiceInfo(service_type, name)
        if not await info.async_request(self._azc.zeroconf, RESOLVE_TIMEOUT_MS):
            log.debug("mDNS service %s did not resolve", name)
            return
        self.stats.resolved += 1
        self.handle_info(parse_txt(info.properties), info.parsed_addresses(IPVersion.V4Only), info.port, changed)

    def handle_info(self, txt: dict[str, str], addresses: Sequence[str], port: int | None, changed: bool) -> None:
        node, community = txt.get("node", ""), txt.get("community", "")
        if txt.get("v") != TXT_VERSION or not SHORT_ID_RE.match(node) or not SHORT_ID_RE.match(community) or not port:
            self.stats.bad_txt += 1
            log.debug("ignored an mDNS service with unusable TXT %r", txt)
            return
        if node == self._ours:
            self.stats.own += 1
            return
        host = best_host(list(addresses), self._selection)
        if host is None:
            self.stats.bad_txt += 1
            return
        if community != self._community:
            self.stats.foreign += 1
            if self._on_foreign is not None:
                self._on_foreign(node, community, host)
            return
        self.stats.ours += 1
        self._on_service(host, int(port), txt, changed)
