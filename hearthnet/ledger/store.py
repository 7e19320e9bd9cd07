"""EventLog: the only writer of `<state_dir>/events.sqlite` (spec core-events-discovery §3–4).

Durability: WAL journal with `synchronous=FULL`. The spec says NORMAL; NORMAL already
survives `kill -9` of the process or the whole tree (the WAL sits in the OS page cache),
but a power cut or kernel panic can drop the last commits. On household hardware (a Pi on
a power strip) that is the common failure, and an append we acknowledged may already be
gossiped to peers, whose later events then point past a hole in our log. FULL fsyncs the
WAL at every commit; ingest batches a whole sync round into one transaction, so the cost
is one fsync per batch, not per event.

Clock: `clock.lamport` is updated in the same transaction as the inserts. Local append:
lamport = ++clock. Received event: clock = max(clock, lamport) + 1, once per event.

Corruption: an existing file is inspected through a read-only connection before anything
is written to it; a file that fails the integrity or schema check raises
LedgerError('db_corrupt') and is never repaired, replaced or rewritten. A new log is
built under a temp name and linked into place, so a half-created file is never left
where a log belongs (and an empty file there counts as damage, not as "no log yet").

Duplicates: a received event whose event_id is already stored (or repeated in the batch)
is counted in `duplicates` and is neither accepted nor rejected: gossip re-sends what a
peer may lack, so duplicates are normal traffic, not errors. The stored copy stays as is.

Validity (views.py rules R1–R4): a batch is judged together with the governance events we
hold, so the stored set is always exactly what the view finds valid. Events that a new
event makes invalid (a revocation whose frontier lacks the revoked node's back-dated
events, joins through its invites, the events of those joiners) are deleted in the same
transaction as the insert: they never had authority, and keeping them would leave nodes
with different event sets. No tombstones: a deleted event that is re-sent is judged again
like any other (and refused while the rules still say so).

Storage order (`seq`): each stored event gets a local sequence number, the row's rowid,
assigned explicitly as one past the highest ever given out on this node (kept in table
`event_seq`, written in the same transaction as the inserts). So a seq is never reused,
not even after rule-5 deletions removed the newest rows and the ledger restarted: live
subscribers resume by it (`events_after`). Lamport order is not arrival order (a
received event may carry a lower lamport than one already stored); seq is.

Threading: one sqlite3 connection, guarded by a lock. The ledger worker calls every
method from one dedicated thread; the lock keeps other callers (tests, tools) safe.
"""
from __future__ import annotations

import json
import logging
import os
import sqlite3
import threading
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

from hearthnet.fsutil import fsync_dir
from hearthnet.identity.canonical import canonical_json
from hearthnet.identity.keys import KeyPair
from hearthnet.identity.manifest import community_policy, rfc3339, utcnow
from hearthnet.ledger.domain import UNKNOWN_RECIPIENT, UNKNOWN_TARGET, domain_problem
from hearthnet.ledger.errors import LedgerError
from hearthnet.ledger.events import (
    CO_SIGNED_TYPES,
    COMMUNITY_MISMATCH,
    GOVERNANCE_TYPES,
    INVALID_SIGNATURE,
    LAMPORT_TOO_FAR,
    SCHEMA_UNKNOWN,
    build_admission,
    build_event,
    named_co_signers,
    shape_problem,
    sort_key,
    verify_event_signature,
)
from hearthnet.ledger.views import CommunityView

log = logging.getLogger("hearthnet.ledger")
MAX_LAMPORT_JUMP = 1_000_000  # a received event may be at most this far past our head
GENESIS_INVITE_TTL_SECONDS = 86_400
_SQL_CHUNK = 900  # ids per IN (...) query, well under SQLite's parameter limit

SCHEMA = """
CREATE TABLE events (
    event_id       TEXT PRIMARY KEY,
    community_id   TEXT NOT NULL,
    schema_version INTEGER NOT NULL DEFAULT 1,
    lamport        INTEGER NOT NULL,
    wall_clock     TEXT NOT NULL,
    author         TEXT NOT NULL,
    event_type     TEXT NOT NULL,
    data           TEXT NOT NULL,
    signature      TEXT NOT NULL,
    received_at    TEXT NOT NULL
);
CREATE INDEX events_by_lamport ON events (community_id, lamport, event_id);
CREATE INDEX events_by_type ON events (community_id, event_type, lamport);
CREATE TABLE clock (
    community_id TEXT PRIMARY KEY,
    lamport      INTEGER NOT NULL
);
"""
EVENT_COLUMNS = ("event_id", "community_id", "schema_version", "lamport", "wall_clock", "author",
                 "event_type", "data", "signature", "received_at")
CLOCK_COLUMNS = ("community_id", "lamport")
# Not part of SCHEMA's checked tables: created at open when missing (logs older than it).
SEQ_TABLE = "CREATE TABLE IF NOT EXISTS event_seq (community_id TEXT PRIMARY KEY, last INTEGER NOT NULL)"
INDEXES = ("events_by_lamport", "events_by_type")
_FIELDS = "schema_version, event_id, lamport, wall_clock, community_id, author, event_type, data, signature"
_SELECT = f"SELECT {_FIELDS} FROM events"
_SELECT_SEQ = f"SELECT rowid, {_FIELDS} FROM events"
_INSERT = (f"INSERT INTO events (rowid, {', '.join(EVENT_COLUMNS)}) "
           f"VALUES ({', '.join('?' * (len(EVENT_COLUMNS) + 1))})")


@dataclass
class IngestResult:
    accepted: int = 0
    rejected: int = 0
    rejected_reasons: list[dict[str, Any]] = field(default_factory=list)
    new_head_lamport: int = 0
    duplicates: int = 0
    stored: list[dict[str, Any]] = field(default_factory=list, repr=False)  # in apply order
    seqs: list[int] = field(default_factory=list, repr=False)  # the local seq of each stored event
    purged: list[str] = field(default_factory=list, repr=False)  # stored ids this batch made invalid

    def reject(self, event_id: Any, reason: str, detail: str | None = None) -> None:
        self.rejected += 1
        entry = {"event_id": event_id if isinstance(event_id, str) else None, "reason": reason}
        if detail:
            entry["detail"] = detail
        self.rejected_reasons.append(entry)

    def to_wire(self) -> dict[str, Any]:
        return {"accepted": self.accepted, "rejected": self.rejected,
                "rejected_reasons": self.rejected_reasons, "new_head_lamport": self.new_head_lamport,
                "duplicates": self.duplicates}


# --------------------------------------------------------------------------- file checks


def _corrupt(path: Path, why: str) -> LedgerError:
    # One line: this message is what the ledger worker logs and `hearthnet status` shows.
    why = "; ".join(part.strip() for part in why.splitlines() if part.strip() and "***" not in part)
    return LedgerError("db_corrupt", f"event log {path} is damaged ({why[:200]}); it was left untouched",
                       path=str(path))


def _schema_problem(conn: sqlite3.Connection) -> str | None:
    def columns(table: str) -> tuple[str, ...]:
        return tuple(row[1] for row in conn.execute(f"PRAGMA table_info({table})"))

    if columns("events") != EVENT_COLUMNS:
        return "table events is missing or has other columns"
    if columns("clock") != CLOCK_COLUMNS:
        return "table clock is missing or has other columns"
    names = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
    missing = [i for i in INDEXES if i not in names]
    return f"index {', '.join(missing)} is missing" if missing else None


def _integrity(conn: sqlite3.Connection, path: Path, *, quick: bool = True) -> None:
    """PRAGMA quick_check (when `quick`) plus the schema check; raises db_corrupt."""
    try:
        if quick:
            rows = conn.execute("PRAGMA quick_check").fetchall()
            if rows != [("ok",)]:
                raise _corrupt(path, "\n".join(str(r[0]) for r in rows[:3]))
        problem = _schema_problem(conn)
    except sqlite3.DatabaseError as exc:
        raise _corrupt(path, str(exc)) from None
    if problem is not None:
        raise _corrupt(path, problem)


def _open_readonly(path: Path) -> sqlite3.Connection:
    try:
        return sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None)
    except sqlite3.DatabaseError as exc:
        raise _corrupt(path, str(exc)) from None


def check_file(path: Path, *, quick: bool = True) -> dict[str, int]:
    """Integrity + schema check through a read-only connection (never writes, safe while
    the ledger runs); returns {"count", "head"}. Raises LedgerError('db_corrupt')."""
    conn = _open_readonly(path)
    try:
        _integrity(conn, path, quick=quick)
        count, head = conn.execute("SELECT COUNT(*), COALESCE(MAX(lamport), 0) FROM events").fetchone()
    except sqlite3.DatabaseError as exc:
        raise _corrupt(path, str(exc)) from None
    finally:
        conn.close()
    return {"count": count, "head": head}


def _connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")  # see the module docstring
    conn.execute("PRAGMA busy_timeout=5000")
    return conn


def _create(path: Path) -> None:
    """Build an empty log beside `path`, then link it into place (never over a file)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)
    try:
        conn = _connect(tmp)
        try:
            conn.executescript(SCHEMA)
        finally:
            conn.close()  # checkpoints the WAL into the file and removes it
        os.chmod(tmp, 0o600)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.link(tmp, path)  # FileExistsError if another process created it first
        fsync_dir(path.parent)
    finally:
        for p in (tmp, tmp.with_name(tmp.name + "-wal"), tmp.with_name(tmp.name + "-shm")):
            p.unlink(missing_ok=True)


def _row_to_event(row: tuple[Any, ...]) -> dict[str, Any]:
    return {"schema_version": row[0], "event_id": row[1], "lamport": row[2], "wall_clock": row[3],
            "community_id": row[4], "author": row[5], "event_type": row[6],
            "data": json.loads(row[7]), "signature": row[8]}


def _event_row(ev: Mapping[str, Any], received_at: str) -> tuple[Any, ...]:
    return (ev["event_id"], ev["community_id"], ev["schema_version"], ev["lamport"], ev["wall_clock"],
            ev["author"], ev["event_type"], canonical_json(ev["data"]).decode("utf-8"),
            ev["signature"], received_at)


def _chunks(items: list[Any], n: int = _SQL_CHUNK) -> Iterator[list[Any]]:
    for i in range(0, len(items), n):
        yield items[i:i + n]


# --------------------------------------------------------------------------- the log


class EventLog:
    """The append-only, signed event log of one community."""

    def __init__(self, db_path: Path, community_id: str) -> None:
        self.path = Path(db_path)
        self.community_id = community_id
        self._lock = threading.RLock()
        self.view = CommunityView(community_id)
        if not self.path.exists():
            try:
                _create(self.path)
            except FileExistsError:
                pass  # another process created it first: check theirs like any other
        # The full check runs read-only before the first read-write open: a damaged file
        # is reported and never touched (no WAL recovery, no header write).
        check_file(self.path)
        self._conn = _connect(self.path)
        try:
            self._clock = self._read_clock()
            self._seq = self._open_seq()
            self._head = self._query_one("SELECT COALESCE(MAX(lamport), 0) FROM events WHERE community_id = ?")
            self._rebuild_view()
            self._purge_at_open()
        except BaseException as exc:
            self._conn.close()
            if isinstance(exc, sqlite3.DatabaseError):
                raise _corrupt(self.path, str(exc)) from None
            raise

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    # ------------------------------------------------------------------ checks

    def check_integrity(self) -> None:
        """PRAGMA quick_check + schema check; LedgerError('db_corrupt') on any damage.
        The file is never repaired here: an operator restores it (see `hearthnet doctor`)."""
        with self._lock:
            _integrity(self._conn, self.path)

    # ------------------------------------------------------------------ reads

    def head(self) -> int:
        return self._head

    @property
    def clock(self) -> int:
        return self._clock

    @property
    def seq(self) -> int:
        """The highest seq given out on this node (0 for an empty log)."""
        return self._seq

    def events_after(self, after_seq: int, event_types: Iterable[str] | None = None,
                     limit: int | None = None) -> list[tuple[int, dict[str, Any]]]:
        """(seq, event) of the stored events with seq > `after_seq`, in storage order."""
        sql = [_SELECT_SEQ, "WHERE community_id = ? AND rowid > ?"]
        args: list[Any] = [self.community_id, after_seq]
        if event_types is not None:
            types = list(event_types)
            sql.append(f"AND event_type IN ({', '.join('?' * len(types))})")
            args += types
        sql.append("ORDER BY rowid")
        if limit is not None:
            sql.append("LIMIT ?")
            args.append(limit)
        with self._lock:
            rows = self._conn.execute(" ".join(sql), args).fetchall()
        return [(r[0], _row_to_event(r[1:])) for r in rows]

    def count(self) -> int:
        with self._lock:
            return self._query_one("SELECT COUNT(*) FROM events WHERE community_id = ?")

    def heads_by_type(self) -> dict[str, int]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT event_type, MAX(lamport) FROM events WHERE community_id = ? GROUP BY event_type",
                (self.community_id,)).fetchall()
        return dict(rows)

    def digest(self) -> str:
        """A hash over every event id: equal digests mean equal logs (a sync round can
        stop after comparing heads)."""
        import blake3

        with self._lock:
            rows = self._conn.execute(
                "SELECT event_id FROM events WHERE community_id = ? ORDER BY event_id",
                (self.community_id,)).fetchall()
        h = blake3.blake3()
        for (event_id,) in rows:
            h.update(event_id.encode() + b"\n")
        return "blake3:" + h.hexdigest()

    def ids_since(self, lamport: int) -> list[str]:
        """Ids of events with lamport > `lamport`, in replay order."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT event_id FROM events WHERE community_id = ? AND lamport > ? ORDER BY lamport, event_id",
                (self.community_id, lamport)).fetchall()
        return [r[0] for r in rows]

    def range_digests(self, ranges: list[tuple[int, int]]) -> list[dict[str, Any]]:
        """{lamport_lo, lamport_hi, count, hash} of each inclusive lamport range (digest.py),
        read from the covering index on (community_id, lamport, event_id)."""
        from hearthnet.ledger.digest import range_hash

        out = []
        for lo, hi in ranges:
            ids = self._ids_between(lo, hi)
            out.append({"lamport_lo": lo, "lamport_hi": hi, "count": len(ids), "hash": range_hash(ids)})
        return out

    def ids_in_ranges(self, ranges: list[tuple[int, int]]) -> list[str]:
        """Ids of the events in the given ascending, disjoint ranges, in replay order."""
        return [i for lo, hi in ranges for i in self._ids_between(lo, hi)]

    def _ids_between(self, lo: int, hi: int) -> list[str]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT event_id FROM events WHERE community_id = ? AND lamport BETWEEN ? AND ? "
                "ORDER BY lamport, event_id", (self.community_id, lo, hi)).fetchall()
        return [r[0] for r in rows]

    def get(self, event_id: str) -> dict[str, Any] | None:
        found = self.events(ids=[event_id])
        return found[0] if found else None

    def events(
        self,
        since_lamport: int = 0,
        ids: Iterable[str] | None = None,
        event_types: Iterable[str] | None = None,
        author: str | None = None,
        limit: int | None = None,
    ) -> list[dict[str, Any]]:
        """Events with lamport > since_lamport matching every given filter, in replay
        order (lamport, event_id)."""
        with self._lock:
            if ids is None:
                out = self._select(since_lamport, None, event_types, author, limit)
            else:
                out = []
                for chunk in _chunks(list(dict.fromkeys(ids))):
                    out += self._select(since_lamport, chunk, event_types, author, limit)
                out.sort(key=sort_key)
        return out[:limit] if limit is not None else out

    def _select(self, since: int, ids: list[str] | None, types: Iterable[str] | None,
                author: str | None, limit: int | None) -> list[dict[str, Any]]:
        sql = [_SELECT, "WHERE community_id = ? AND lamport > ?"]
        args: list[Any] = [self.community_id, since]
        for column, values in (("event_id", ids), ("event_type", None if types is None else list(types))):
            if values is not None:
                sql.append(f"AND {column} IN ({', '.join('?' * len(values))})")
                args += values
        if author is not None:
            sql.append("AND author = ?")
            args.append(author)
        sql.append("ORDER BY lamport, event_id")
        if limit is not None:
            sql.append("LIMIT ?")
            args.append(limit)
        return [_row_to_event(r) for r in self._conn.execute(" ".join(sql), args)]

    # ------------------------------------------------------------------ writes

    def append_local(self, kp: KeyPair, event_type: str, data: Mapping[str, Any]) -> dict[str, Any]:
        """Author, sign and store one event at lamport = clock + 1. Raises
        LedgerError('bad_request') for a malformed event and ('unauthorized') for a type
        this node may not author now. A governance event may make stored events invalid
        (a revocation): they are deleted in the same transaction."""
        with self._lock:
            ev = build_event(kp, self.community_id, self._clock + 1, event_type, data)
            result = IngestResult()
            self._settle([ev], result, local=True)
            if result.rejected:
                refusal = result.rejected_reasons[0]
                if "detail" in refusal:  # a domain rule (domain.py): its own code and words
                    code = {UNKNOWN_TARGET: "not_found", UNKNOWN_RECIPIENT: "not_found"}.get(refusal["reason"],
                                                                                          "unauthorized")
                    raise LedgerError(code, f"{event_type} refused: {refusal['detail']}", reason=refusal["reason"])
                raise LedgerError("unauthorized", f"{kp.node_id_short} may not author {event_type} "
                                                  f"in this community now ({refusal['reason']})")
        return ev

    def append_received(self, events: list[Any]) -> IngestResult:
        """Verify a batch from a peer and store the good events in ONE transaction; each
        bad one is reported with a reason and never stored. Stateless checks first (shape,
        community, duplicate, signature), then the batch together with what we hold
        against the rules of the view, so an event may rely on another of the same batch
        (an invite, then a join), and stored events the batch makes invalid (a revocation
        whose frontier lacks them) are deleted in the same transaction."""
        result = IngestResult()
        candidates = self._well_formed(events, result)
        with self._lock:
            fresh = self._not_stored(candidates, result)
            self._settle(sorted(fresh, key=sort_key), result)
        result.accepted = len(result.stored)
        result.new_head_lamport = self._head
        return result

    def _settle(self, batch: list[dict[str, Any]], result: IngestResult, *, local: bool = False) -> None:
        """Judge `batch` (verified, new, in replay order) with the view, then write the
        valid events and delete what is no longer valid, in one transaction."""
        try:
            batch = batch if local else self._near_enough(batch, result)
            governs = any(ev["event_type"] in GOVERNANCE_TYPES for ev in batch)
            before = self.view.authors() if governs else {}  # only governance changes standing
            self.view.add(batch)
            invalid = self.view.invalid
            stored_here: dict[str, dict[str, Any]] = {}
            lookup = lambda eid: stored_here.get(eid) or self._event(eid)  # noqa: E731
            for ev in batch:
                reason = invalid.get(ev["event_id"]) if ev["event_type"] in GOVERNANCE_TYPES \
                    else self.view.author_problem(ev)
                problem = (reason, None) if reason is not None else domain_problem(ev, lookup, self.view.level_of)
                if problem is None:
                    result.stored.append(ev)
                    stored_here[ev["event_id"]] = ev
                else:
                    result.reject(ev["event_id"], *problem)
            new_ids = {ev["event_id"] for ev in batch}
            governance = [eid for eid in invalid if eid not in new_ids]
            doomed = governance + (self._lost_authority(before) if governs else [])
            if result.stored or doomed:
                result.seqs = self._write(result.stored, self._next_clock(result.stored, local), doomed)
                result.purged = doomed
            self.view.forget(list(invalid))
        except BaseException:
            self._rebuild_view()  # the view ran ahead of a transaction that did not commit
            raise
        self.view.head_lamport = self._head
        if doomed:  # they never had authority: not history, so not kept
            log.warning("deleted stored events the new events made invalid", extra={
                "governance": len(governance), "other": len(doomed) - len(governance)})

    def _event(self, event_id: str) -> dict[str, Any] | None:
        row = self._conn.execute(f"{_SELECT} WHERE community_id = ? AND event_id = ?",
                                 (self.community_id, event_id)).fetchone()
        return _row_to_event(row) if row is not None else None

    def _near_enough(self, batch: list[dict[str, Any]], result: IngestResult) -> list[dict[str, Any]]:
        """Refuse events too far past our head (a bound on clock jumps, not a rule of
        authority); the bound moves with the batch."""
        head, near = self._head, []
        for ev in batch:
            if ev["lamport"] > head + MAX_LAMPORT_JUMP:
                result.reject(ev["event_id"], LAMPORT_TOO_FAR)
            else:
                near.append(ev)
                head = max(head, ev["lamport"])
        return near

    def _next_clock(self, stored: list[dict[str, Any]], local: bool) -> int:
        clock = self._clock
        for ev in stored:  # local: lamport = clock + 1; received: max(clock, lamport) + 1 each
            clock = max(clock, ev["lamport"]) if local else max(clock, ev["lamport"]) + 1
        return clock

    def _lost_authority(self, before: Mapping[str, str]) -> list[str]:
        """Stored non-governance events whose author's standing changed for the worse
        (no longer a member, or revoked: only the frontier stays valid)."""
        after = self.view.authors()
        changed = [n for n, status in before.items() if after.get(n) != status and after.get(n) != "member"]
        doomed: list[str] = []
        for author in changed:
            rows = self._conn.execute(
                f"{_SELECT} WHERE community_id = ? AND author = ? AND event_type NOT IN "
                f"({', '.join('?' * len(GOVERNANCE_TYPES))})",
                (self.community_id, author, *sorted(GOVERNANCE_TYPES))).fetchall()
            doomed += [ev["event_id"] for ev in map(_row_to_event, rows) if self.view.author_problem(ev) is not None]
        return doomed

    def frontier(self, target_node_id: str, action: str = "revoke") -> list[str]:
        """The `frontier` of a revocation (R1) or demotion (R4) of `target_node_id` built
        now, sorted. Revoke: every event it authored that we hold, every join that used one
        of its invites, every governance event it co-signed. Demote: the governance events
        it authored or co-signed."""
        with self._lock:
            rows = self._conn.execute("SELECT event_id, event_type FROM events WHERE community_id = ? AND author = ?",
                                      (self.community_id, target_node_id)).fetchall()
            co_signed = [ev["event_id"] for ev in self._select(0, None, sorted(CO_SIGNED_TYPES), None, None)
                         if target_node_id in named_co_signers(ev)]
            if action == "demote":
                return sorted({eid for eid, kind in rows if kind in GOVERNANCE_TYPES} | set(co_signed))
            invites = {eid for eid, kind in rows if kind == "community.member.invited"}
            joins = [ev["event_id"] for ev in self._select(0, None, ["community.member.joined"], None, None)
                     if ev["data"].get("invite_event_id") in invites] if invites else []
        return sorted({eid for eid, _ in rows} | set(joins) | set(co_signed))

    def _well_formed(self, events: list[Any], result: IngestResult) -> list[dict[str, Any]]:
        good = []
        for ev in events:
            eid = ev.get("event_id") if isinstance(ev, dict) else None
            if shape_problem(ev) is not None:
                result.reject(eid, SCHEMA_UNKNOWN)
            elif ev["community_id"] != self.community_id:
                result.reject(eid, COMMUNITY_MISMATCH)
            else:
                good.append(ev)
        return good

    def _not_stored(self, events: list[dict[str, Any]], result: IngestResult) -> list[dict[str, Any]]:
        """Drop duplicates (stored or repeated in the batch), then bad signatures. Known ids
        are dropped before verifying: re-sent events are common and verifying costs most."""
        stored = self._existing_ids([ev["event_id"] for ev in events])
        fresh: dict[str, dict[str, Any]] = {}
        for ev in events:
            eid = ev["event_id"]
            if eid in stored or eid in fresh:
                result.duplicates += 1
            elif not verify_event_signature(ev):
                result.reject(eid, INVALID_SIGNATURE)
            else:
                fresh[eid] = ev
        return list(fresh.values())

    def _existing_ids(self, ids: list[str]) -> set[str]:
        found: set[str] = set()
        for chunk in _chunks(ids):
            rows = self._conn.execute(
                f"SELECT event_id FROM events WHERE event_id IN ({', '.join('?' * len(chunk))})", chunk)
            found.update(r[0] for r in rows)
        return found

    def _write(self, events: list[dict[str, Any]], clock: int, doomed: list[str] = ()) -> list[int]:
        """Insert `events`, delete the events `doomed` and set the clock in one
        transaction; returns the seq of each inserted event."""
        received_at = rfc3339(utcnow())
        seqs = list(range(self._seq + 1, self._seq + 1 + len(events)))
        rows = [(seq, *_event_row(ev, received_at)) for seq, ev in zip(seqs, events)]
        try:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                self._conn.executemany(_INSERT, rows)
                if seqs:
                    self._conn.execute(
                        "INSERT INTO event_seq (community_id, last) VALUES (?, ?) "
                        "ON CONFLICT (community_id) DO UPDATE SET last = excluded.last",
                        (self.community_id, seqs[-1]))
                for chunk in _chunks(list(doomed)):
                    self._conn.execute(f"DELETE FROM events WHERE community_id = ? AND event_id IN "
                                       f"({', '.join('?' * len(chunk))})", (self.community_id, *chunk))
                self._conn.execute(
                    "INSERT INTO clock (community_id, lamport) VALUES (?, ?) "
                    "ON CONFLICT (community_id) DO UPDATE SET lamport = excluded.lamport",
                    (self.community_id, clock))
                self._conn.execute("COMMIT")
            except BaseException:
                if self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")
                raise
        except sqlite3.DatabaseError as exc:
            raise self._storage_error(exc) from exc
        self._clock = clock
        self._seq = seqs[-1] if seqs else self._seq
        if doomed:
            self._head = self._query_one("SELECT COALESCE(MAX(lamport), 0) FROM events WHERE community_id = ?")
        elif events:
            self._head = max(self._head, max(ev["lamport"] for ev in events))
        return seqs

    def _storage_error(self, exc: sqlite3.DatabaseError) -> LedgerError:
        text = str(exc)
        if "full" in text:
            return LedgerError("disk_full", f"cannot write {self.path}: {text}", path=str(self.path))
        if "malformed" in text or "not a database" in text:
            return _corrupt(self.path, text)
        return LedgerError("internal_error", f"cannot write {self.path}: {text}", path=str(self.path))

    # ------------------------------------------------------------------ genesis

    def create_genesis(
        self,
        root_kp: KeyPair,
        name: str,
        policy: Mapping[str, Any] | None = None,
        *,
        display_name: str = "",
        node_manifest: Mapping[str, Any] | None = None,
        now: datetime | None = None,
    ) -> list[dict[str, Any]]:
        """The 3 founding events at lamports 1..3 (§2 Bootstrapping): community.created,
        community.member.invited (the founder, as anchor) and community.member.joined."""
        if root_kp.node_id_full != self.community_id:
            raise LedgerError("unauthorized", "only the root key founds its community")
        at = now or utcnow()
        with self._lock:
            if self.count():
                raise LedgerError("bad_request", f"{self.path} already holds events; genesis happens once")
            founder = root_kp.node_id_full
            manifest = dict(node_manifest) if node_manifest is not None else _default_node_manifest(root_kp, self.path, display_name or name)
            created = build_event(root_kp, founder, 1, "community.created",
                                  {"name": name, "founder_node_id": founder, "policy": community_policy(policy)}, now=at)
            invited = build_event(root_kp, founder, 2, "community.member.invited", {
                "invitee_node_id": founder, "display_name": display_name or name, "initial_level": "anchor",
                "expires_at": rfc3339(at + timedelta(seconds=GENESIS_INVITE_TTL_SECONDS))}, now=at)
            admission = build_admission(root_kp, invited["event_id"], founder, at)  # R3: self-admitted
            joined = build_event(root_kp, founder, 3, "community.member.joined",
                                 {"invite_event_id": invited["event_id"], "node_manifest": manifest,
                                  "admission": admission}, now=at)
            genesis = [created, invited, joined]
            result = IngestResult()
            self._settle(genesis, result, local=True)
            if result.rejected:
                raise LedgerError("internal_error", f"genesis refused: {result.rejected_reasons}")
        return genesis

    # ------------------------------------------------------------------ internals

    def _query_one(self, sql: str) -> int:
        return int(self._conn.execute(sql, (self.community_id,)).fetchone()[0])

    def _open_seq(self) -> int:
        """The seq high-water mark: the stored one, or the highest rowid (a log written
        before seqs were kept, whose rowids already follow insertion order)."""
        self._conn.execute(SEQ_TABLE)
        row = self._conn.execute("SELECT last FROM event_seq WHERE community_id = ?", (self.community_id,)).fetchone()
        top = self._conn.execute("SELECT COALESCE(MAX(rowid), 0) FROM events").fetchone()[0]
        return max(int(row[0]) if row else 0, int(top))

    def _read_clock(self) -> int:
        row = self._conn.execute("SELECT lamport FROM clock WHERE community_id = ?", (self.community_id,)).fetchone()
        return int(row[0]) if row else 0

    def _rebuild_view(self) -> None:
        """The membership view from the governance events only (index-backed: cheap even
        for a long log); head_lamport from the whole log."""
        with self._lock:
            self.view.reset()
            rows = self._select(0, None, GOVERNANCE_TYPES, None, None)
            self._malformed = [ev["event_id"] for ev in rows if shape_problem(ev) is not None]
            self.view.add([ev for ev in rows if ev["event_id"] not in self._malformed] if self._malformed else rows)
            self.view.head_lamport = self._head

    def _purge_at_open(self) -> None:
        """A log written under other rules (an older version) may hold events the view
        finds invalid: delete them, and the events of authors who are no members, so this
        node holds what every other node holds (one log line with the counts)."""
        invalid = dict(self.view.invalid)
        if not invalid and not self._malformed:
            return
        authors = [r[0] for r in self._conn.execute(
            "SELECT DISTINCT author FROM events WHERE community_id = ?", (self.community_id,))]
        doomed = list(invalid) + self._malformed + self._lost_authority({a: "" for a in authors})
        self._write([], self._clock, doomed)
        self.view.forget(list(invalid))
        self.view.head_lamport = self._head
        log.warning("deleted events without authority at open", extra={
            "path": str(self.path), "governance": len(invalid) + len(self._malformed), "total": len(doomed)})
        self._malformed = []


def _default_node_manifest(kp: KeyPair, db_path: Path, display_name: str) -> dict[str, Any]:
    """The founder's node manifest at join when the caller has none: real hardware, no
    endpoints or capabilities yet (the node is not running)."""
    from hearthnet.identity.manifest import build_node_manifest
    from hearthnet.profile import detect_hardware, detect_profile

    hardware = detect_hardware(db_path.parent)
    return build_node_manifest(
        kp, display_name=display_name[:64], community_id=kp.node_id_full, profile=detect_profile(hardware),
        endpoints=[], hardware=hardware, capabilities=[], uptime_seconds=0,
        load={"cpu": 0.0, "vram_used_gb": 0.0, "in_flight_total": 0})
