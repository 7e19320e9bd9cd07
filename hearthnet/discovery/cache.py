"""Persistent peer cache `<DATA>/peers.json`.

Remembers where peers were last reached, so a restarted node finds them again even when
multicast is dropped (many Wi-Fi access points do), and holds the manual peers the user
added with `hearthnet peer add HOST:PORT`. The discovery service retries every entry at
start and periodically.

The CLI and the discovery worker are different processes writing the same file, so each
change is a read-modify-write under an flock on `peers.json.lock`, and the file itself is
replaced atomically (readers never need the lock).

    {"version": 1, "peers": [{"host": "10.0.0.5", "port": 7080, "node_id": "ed25519:...",
      "tls_fingerprint": "...", "how_found": "udp", "manual": false,
      "last_verified": "2026-05-26T08:14:22Z", "added_at": "2026-05-20T10:00:00Z"}]}
"""
from __future__ import annotations

import fcntl
import ipaddress
import json
import logging
import re
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Callable, Iterator

from hearthnet.errors import HearthNetError
from hearthnet.fsutil import atomic_write
from hearthnet.identity.manifest import parse_rfc3339, rfc3339, utcnow

log = logging.getLogger(__name__)

PEERS_FILE = "peers.json"
CACHE_VERSION = 1
DEFAULT_PEER_PORT = 7080
FORGET_AFTER = timedelta(days=30)  # discovered (not manual) peers unverified this long
MAX_ENTRIES = 256
WRITE_THROTTLE_SECONDS = 600.0  # re-verifying an unchanged peer rewrites at most this often
HOW_FOUND = ("mdns", "udp", "cache", "manual")
_HOSTNAME = re.compile(r"^(?=.{1,253}$)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?$")


# --------------------------------------------------------------------------- addresses


def normalize_host(host: str) -> str:
    """An IP literal (IPv6 without brackets) or a DNS name; raises bad_request."""
    text = host.strip().removeprefix("[").removesuffix("]") if isinstance(host, str) else ""
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        if _HOSTNAME.match(text):
            return text.lower().rstrip(".")
    raise HearthNetError("bad_request", f"{host!r} is not a host name or IP address")


def check_port(port: Any) -> int:
    if type(port) is not int or not 1 <= port <= 65535:
        raise HearthNetError("bad_request", f"{port!r} is not a TCP port (1-65535)")
    return port


def parse_host_port(text: str, default_port: int = DEFAULT_PEER_PORT) -> tuple[str, int]:
    """`HOST`, `HOST:PORT`, `[v6]:PORT` or a bare IPv6 address -> (host, port)."""
    text = text.strip()
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port_text = rest.removeprefix(":") if rest else ""
    elif text.count(":") == 1:
        host, port_text = text.split(":")
    else:
        host, port_text = text, ""
    if port_text and not port_text.isdigit():
        raise HearthNetError("bad_request", f"{text!r}: port {port_text!r} is not a number")
    return normalize_host(host), check_port(int(port_text) if port_text else default_port)


def format_address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


# --------------------------------------------------------------------------- entries


@dataclass(frozen=True)
class CachedPeer:
    host: str
    port: int
    node_id: str | None = None  # unknown for a manual entry never reached yet
    tls_fingerprint: str | None = None
    how_found: str = "manual"
    manual: bool = False  # added by the user: never forgotten automatically
    last_verified: str | None = None  # RFC 3339 wall time (survives reboots)
    added_at: str = ""

    @property
    def address(self) -> str:
        return format_address(self.host, self.port)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, doc: Any) -> "CachedPeer":
        if not isinstance(doc, dict):
            raise ValueError("entry is not an object")
        how = doc.get("how_found", "manual")
        if how not in HOW_FOUND:
            raise ValueError(f"how_found {how!r}")
        return cls(host=normalize_host(doc["host"]), port=check_port(doc["port"]),
                   node_id=_opt_str(doc.get("node_id")), tls_fingerprint=_opt_str(doc.get("tls_fingerprint")),
                   how_found=how, manual=bool(doc.get("manual", False)),
                   last_verified=_opt_str(doc.get("last_verified")), added_at=str(doc.get("added_at", "")))


def _opt_str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _verified_at(entry: CachedPeer) -> datetime | None:
    try:
        return parse_rfc3339(entry.last_verified) if entry.last_verified else None
    except ValueError:
        return None


# --------------------------------------------------------------------------- the file


class PeerCache:
    def __init__(self, path: Path, *, wallclock: Callable[[], datetime] = utcnow,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.path = path
        self._wallclock = wallclock
        self._clock = clock
        self._written: dict[tuple[str, int], tuple[str, str | None, float]] = {}

    @classmethod
    def for_data_dir(cls, data_dir: Path) -> "PeerCache":
        return cls(data_dir / PEERS_FILE)

    # ---------------------------------------------------------------- reading

    def load(self) -> list[CachedPeer]:
        """Every entry; a missing or unreadable file is an empty cache (logged)."""
        entries, problem = self._read()
        if problem:
            log.warning("peer cache %s: %s; starting from an empty cache", self.path, problem)
        return entries

    def _read(self) -> tuple[list[CachedPeer], str | None]:
        try:
            doc = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return [], None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            return [], f"unreadable ({exc})"
        if not isinstance(doc, dict) or doc.get("version") != CACHE_VERSION or not isinstance(doc.get("peers"), list):
            return [], "not a version-1 peer cache"
        entries: list[CachedPeer] = []
        for raw in doc["peers"]:
            try:
                entries.append(CachedPeer.from_json(raw))
            except (KeyError, ValueError, HearthNetError) as exc:
                log.warning("peer cache %s: skipped a bad entry %r: %s", self.path, raw, exc)
        return entries, None

    # ---------------------------------------------------------------- writing

    @contextmanager
    def _locked(self) -> Iterator[None]:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        with open(self.path.with_name(self.path.name + ".lock"), "a+b") as lock:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock.fileno(), fcntl.LOCK_UN)

    def _update(self, change: Callable[[list[CachedPeer]], list[CachedPeer]]) -> list[CachedPeer]:
        with self._locked():
            entries, problem = self._read()
            if problem:
                self._set_aside(problem)
            new = self._trim(change(entries))
            body = {"version": CACHE_VERSION, "peers": [e.to_json() for e in new]}
            atomic_write(self.path, (json.dumps(body, indent=2, ensure_ascii=False) + "\n").encode("utf-8"), 0o600)
            return new

    def _set_aside(self, problem: str) -> None:
        """Keep a damaged file for the user instead of silently overwriting it."""
        aside = self.path.with_name(f"{self.path.name}.corrupt-{int(time.time())}")
        self.path.replace(aside)
        log.warning("peer cache %s was %s; moved it to %s", self.path, problem, aside)

    def _trim(self, entries: list[CachedPeer]) -> list[CachedPeer]:
        cutoff = self._wallclock() - FORGET_AFTER
        kept = [e for e in entries if e.manual or (_verified_at(e) or cutoff) > cutoff]
        if len(kept) <= MAX_ENTRIES:
            return kept
        manual = [e for e in kept if e.manual]
        found = sorted((e for e in kept if not e.manual), key=lambda e: e.last_verified or "", reverse=True)
        return manual + found[: max(0, MAX_ENTRIES - len(manual))]

    # ---------------------------------------------------------------- operations

    def add_manual(self, host: str, port: int) -> CachedPeer:
        """Remember HOST:PORT as a manual peer (idempotent); returns the entry."""
        host, port = normalize_host(host), check_port(port)
        now = rfc3339(self._wallclock())

        def change(entries: list[CachedPeer]) -> list[CachedPeer]:
            for i, e in enumerate(entries):
                if (e.host, e.port) == (host, port):
                    entries[i] = replace(e, manual=True, how_found="manual")
                    return entries
            return [*entries, CachedPeer(host, port, how_found="manual", manual=True, added_at=now)]

        return next(e for e in self._update(change) if (e.host, e.port) == (host, port))

    def remove(self, host: str, port: int) -> bool:
        host, port = normalize_host(host), check_port(port)
        removed: list[CachedPeer] = []

        def change(entries: list[CachedPeer]) -> list[CachedPeer]:
            removed.extend(e for e in entries if (e.host, e.port) == (host, port))
            return [e for e in entries if (e.host, e.port) != (host, port)]

        self._update(change)
        self._written.pop((host, port), None)
        return bool(removed)

    def record_verified(self, node_id: str, host: str, port: int, tls_fingerprint: str | None,
                        how_found: str) -> bool:
        """Note that `node_id` answered with a valid manifest at host:port. Unchanged
        facts are rewritten at most every WRITE_THROTTLE_SECONDS; True if written."""
        key = (host, port)
        memo = self._written.get(key)
        if memo and memo[:2] == (node_id, tls_fingerprint) and self._clock() - memo[2] < WRITE_THROTTLE_SECONDS:
            return False
        now = rfc3339(self._wallclock())
        how = how_found if how_found in HOW_FOUND else "cache"
        self._update(lambda entries: _merge_verified(entries, CachedPeer(
            host, port, node_id, tls_fingerprint, how, False, now, now)))
        self._written[key] = (node_id, tls_fingerprint, self._clock())
        return True


def _merge_verified(entries: list[CachedPeer], fresh: CachedPeer) -> list[CachedPeer]:
    out: list[CachedPeer] = []
    placed = False
    for e in entries:
        if (e.host, e.port) == (fresh.host, fresh.port):
            # A manual entry stays manual; only what we learned about it changes.
            how = e.how_found if e.manual else fresh.how_found
            out.append(replace(e, node_id=fresh.node_id, tls_fingerprint=fresh.tls_fingerprint or e.tls_fingerprint,
                               last_verified=fresh.last_verified, how_found=how))
            placed = True
        elif e.node_id == fresh.node_id and not e.manual:
            continue  # the node moved (new DHCP lease): forget its old address
        else:
            out.append(e)
    return out if placed else [*out, fresh]
