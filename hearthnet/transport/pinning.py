"""Certificate pinning, trust on first use (spec core-bus-transport §12).

`PinStore` remembers the first TLS certificate fingerprint seen for each full NodeID and
refuses any other later. The first fingerprint is taken from the peer's *signed* node
manifest (`tls_fingerprint`), not from whatever an address happened to present, so a
stranger on the LAN cannot plant a pin for somebody else's node id.

File (suggested `<DATA>/tls/known_peers.json`, 0600, written atomically):
    {"version": 1, "pins": {"ed25519:<full>": {"fingerprint": "sha256:<hex>",
                                               "first_seen": "2026-05-26T08:14:22Z"}}}

A peer that legitimately gets a new certificate (its `<DATA>/tls` was deleted) is refused
until the operator drops the old pin (`forget`).
"""
from __future__ import annotations

import json
import logging
import threading
from pathlib import Path
from typing import Any

from hearthnet.errors import HearthNetError
from hearthnet.fsutil import atomic_write
from hearthnet.identity.keys import parse_node_id
from hearthnet.identity.manifest import rfc3339, utcnow
from hearthnet.transport.tls import check_fingerprint_format, fingerprint

log = logging.getLogger("hearthnet.transport.pinning")
FILE_VERSION = 1


class PinStore:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()  # the gateway may touch it from worker threads
        self._pins: dict[str, dict[str, str]] = self._load()

    # ---- queries --------------------------------------------------------------------

    def expected(self, node_id: str) -> str | None:
        entry = self._pins.get(node_id)
        return entry["fingerprint"] if entry else None

    def all(self) -> dict[str, str]:
        return {n: e["fingerprint"] for n, e in self._pins.items()}

    # ---- updates --------------------------------------------------------------------

    def record(self, node_id: str, fp: str) -> None:
        """Pin `fp` for `node_id`. Re-recording the same pin is a no-op; a different
        one raises invalid_signature (a pin is never silently replaced)."""
        self.check(node_id, fp)

    def check(self, node_id: str, fp: str) -> bool:
        """Pass if `fp` is the pinned fingerprint, pin it if the node is new (returns
        True then), raise invalid_signature if another one is pinned."""
        _validate(node_id, fp)
        with self._lock:
            pinned = self.expected(node_id)
            if pinned == fp:
                return False
            if pinned is not None:
                log.warning("certificate pin mismatch; refusing peer",
                            extra={"node_id": node_id, "expected": pinned, "got": fp})
                raise HearthNetError(
                    "invalid_signature",
                    f"{node_id} presented certificate {fp}, but {pinned} is pinned for it",
                )
            self._pins[node_id] = {"fingerprint": fp, "first_seen": rfc3339(utcnow())}
            self._save()
        log.info("pinned peer certificate", extra={"node_id": node_id, "fingerprint": fp})
        return True

    def forget(self, node_id: str) -> bool:
        """Drop a pin (operator action after a peer re-keyed its TLS). True if one existed."""
        with self._lock:
            if self._pins.pop(node_id, None) is None:
                return False
            self._save()
        return True

    # ---- disk -----------------------------------------------------------------------

    def _load(self) -> dict[str, dict[str, str]]:
        try:
            doc = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            # Starting with no pins would silently re-trust every peer: refuse instead.
            raise HearthNetError("pins_invalid", f"cannot read certificate pins {self.path}: {exc}") from exc
        pins = doc.get("pins") if isinstance(doc, dict) else None
        if not isinstance(pins, dict):
            raise HearthNetError("pins_invalid", f"{self.path} has no pins object")
        return {n: _entry(self.path, n, e) for n, e in pins.items()}

    def _save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        doc = {"version": FILE_VERSION, "pins": self._pins}
        atomic_write(self.path, (json.dumps(doc, indent=2, sort_keys=True) + "\n").encode(), 0o600)


def _validate(node_id: str, fp: str) -> None:
    parse_node_id(node_id)  # full ids only; short display ids are refused
    check_fingerprint_format(fp)


def _entry(path: Path, node_id: str, entry: Any) -> dict[str, str]:
    try:
        _validate(node_id, entry["fingerprint"])
    except (HearthNetError, KeyError, TypeError) as exc:
        raise HearthNetError("pins_invalid", f"{path}: bad pin for {node_id!r}: {exc}") from None
    return {"fingerprint": entry["fingerprint"], "first_seen": str(entry.get("first_seen", ""))}


# --------------------------------------------------------------------------- aiohttp helper


def peer_fingerprint_from_transport(transport: Any) -> str | None:
    """Fingerprint of the certificate the other end of an asyncio transport presented."""
    if transport is None:
        return None
    sslobj = transport.get_extra_info("ssl_object")
    der = sslobj.getpeercert(binary_form=True) if sslobj is not None else None
    return fingerprint(der) if der else None


def peer_fingerprint(resp: Any) -> str | None:
    """The peer certificate fingerprint of an aiohttp ClientResponse (or Connection).

    Only reliable while the response still holds its connection (a stream being read):
    aiohttp releases the connection as soon as the whole body has arrived, which for a
    small reply is before the caller even sees the response, and then this returns None.
    PeerClient therefore enforces pins at the TLS handshake (aiohttp.Fingerprint) and
    does not depend on this helper."""
    conn = getattr(resp, "connection", resp)
    return peer_fingerprint_from_transport(getattr(conn, "transport", None))
