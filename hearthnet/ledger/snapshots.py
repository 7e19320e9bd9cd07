"""Signed snapshots of the views (spec core-events-discovery §6; CONTRACT §7.5).

A snapshot is one canonical-JSON file `<state_dir>/snapshots/<lamport>.bin`:

    schema_version, community_id, lamport, wall_clock,
    state {"community": CommunityView.snapshot_state()}  (revoked entries with their
           frontier, the governance events themselves, so a restored view applies the
           revocation rules to what comes after exactly as a full replay would),
    covers_events_up_to, signature   (by an anchor, over every other field)

Verification tries the signers the caller trusts (the anchors of its own view plus the
root key), so a snapshot cannot vouch for its own signer. A file that does not verify is
skipped and logged, never deleted or rewritten.

Restore = verify, `restore_state`, then replay the events after `covers_events_up_to`.
The ledger worker itself rebuilds its membership view from the governance events at start
(index-backed and exact even for events that arrived late with a lamport below a
snapshot); snapshots serve joins and other views, and keep a signed checkpoint on disk.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Iterable

from hearthnet.fsutil import atomic_write
from hearthnet.identity.canonical import canonical_json
from hearthnet.identity.keys import KeyPair, verify_payload_with_node_id
from hearthnet.identity.manifest import rfc3339, utcnow
from hearthnet.ledger.errors import LedgerError
from hearthnet.ledger.events import GOVERNANCE_TYPES
from hearthnet.ledger.views import CommunityView

log = logging.getLogger("hearthnet.ledger.snapshots")

SNAPSHOT_VERSION = 2  # 2: revoked entries carry their frontier (R1); version 1 files are skipped
SNAPSHOT_LAG_LAMPORT = 1000  # snapshot at head - 1000: recent events may still be settling
KEEP_LAST_N = 7
SNAPSHOT_FIELDS = ("schema_version", "community_id", "lamport", "wall_clock", "state",
                   "covers_events_up_to", "signature")


def build_snapshot(kp: KeyPair, community_id: str, lamport: int, state: dict[str, Any]) -> dict[str, Any]:
    body = {"schema_version": SNAPSHOT_VERSION, "community_id": community_id, "lamport": lamport,
            "wall_clock": rfc3339(utcnow()), "state": state, "covers_events_up_to": lamport}
    return kp.sign(body)


def verify_snapshot(snap: Any, community_id: str, signers: Iterable[str]) -> dict[str, Any]:
    """Shape, community and a signature by one of `signers`; returns `snap`."""
    if not isinstance(snap, dict) or set(snap) != set(SNAPSHOT_FIELDS):
        raise LedgerError("bad_snapshot", "a snapshot has exactly the fields " + ", ".join(SNAPSHOT_FIELDS))
    if snap["schema_version"] != SNAPSHOT_VERSION or snap["community_id"] != community_id:
        raise LedgerError("bad_snapshot", "snapshot of another community or schema version")
    if not any(verify_payload_with_node_id(snap, s) for s in signers):
        raise LedgerError("invalid_signature", f"snapshot at lamport {snap['lamport']} is not signed by an anchor")
    return snap


class SnapshotStore:
    def __init__(self, state_dir: Path, community_id: str) -> None:
        self.dir = Path(state_dir) / "snapshots"
        self.community_id = community_id

    def path_for(self, lamport: int) -> Path:
        return self.dir / f"{lamport}.bin"

    def save(self, snap: dict[str, Any]) -> Path:
        path = self.path_for(int(snap["lamport"]))
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        atomic_write(path, canonical_json(snap), 0o600)
        return path

    def list(self) -> list[int]:
        """Lamports of the snapshot files, ascending."""
        if not self.dir.is_dir():
            return []
        return sorted(int(p.stem) for p in self.dir.glob("*.bin") if p.stem.isdigit())

    def load(self, lamport: int, signers: Iterable[str]) -> dict[str, Any]:
        path = self.path_for(lamport)
        try:
            snap = json.loads(path.read_bytes())
        except (OSError, ValueError) as exc:
            raise LedgerError("bad_snapshot", f"cannot read {path}: {exc}") from None
        return verify_snapshot(snap, self.community_id, signers)

    def latest(self, signers: Iterable[str]) -> dict[str, Any] | None:
        """The newest snapshot that verifies; damaged or foreign ones are skipped."""
        trusted = list(signers)
        for lamport in reversed(self.list()):
            try:
                return self.load(lamport, trusted)
            except LedgerError as exc:
                log.warning("skipping snapshot", extra={"path": str(self.path_for(lamport)), "why": exc.message})
        return None

    def prune(self, keep_last_n: int = KEEP_LAST_N) -> list[int]:
        """Delete all but the newest `keep_last_n` snapshots; returns the lamports removed."""
        doomed = self.list()[:-keep_last_n] if keep_last_n > 0 else self.list()
        for lamport in doomed:
            self.path_for(lamport).unlink(missing_ok=True)
        return doomed


def trusted_signers(view: CommunityView) -> list[str]:
    """Who may sign a snapshot, by our own view: its anchors, and the root unless revoked."""
    root = [] if view.community_id in view.revoked else [view.community_id]
    return sorted(set(view.anchors() + root))


def take_snapshot(event_log: Any, kp: KeyPair, store: SnapshotStore,
                  lag: int = SNAPSHOT_LAG_LAMPORT) -> dict[str, Any] | None:
    """Snapshot the views at head - lag, signed by `kp` (an anchor), and keep the last 7.
    None when there is nothing new to cover or this node is not an anchor."""
    target = event_log.head() - lag
    done = store.list()
    if target <= 0 or (done and done[-1] >= target) or event_log.view.level_of(kp.node_id_full) != "anchor":
        return None
    view = CommunityView(event_log.community_id)
    view.add([ev for ev in event_log.events(event_types=GOVERNANCE_TYPES) if ev["lamport"] <= target])
    view.head_lamport = target
    snap = build_snapshot(kp, event_log.community_id, target, {"community": view.snapshot_state()})
    store.save(snap)
    store.prune()
    return snap


def restore_view(snap: dict[str, Any], event_log: Any) -> CommunityView:
    """A view from a verified snapshot plus the events after it."""
    view = CommunityView(event_log.community_id)
    view.restore_state(snap["state"]["community"])
    view.add(event_log.events(since_lamport=snap["covers_events_up_to"], event_types=GOVERNANCE_TYPES))
    view.head_lamport = max(view.head_lamport, event_log.head())
    return view
