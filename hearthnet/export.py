"""`hearthnet export` without the CLI: everything this node holds about its owner, as one
signed ZIP (seed M12 §3.9; spec core-observability-cli-onboarding §5), and its checker.

Layout (format version 1):

    node_manifest.json       a freshly built node manifest, signed by the device key
    community_manifest.json  the community manifest on disk (verbatim; absent before init)
    events.jsonl             events WE authored, (lamport, event_id) order, one envelope a line
    chat.jsonl               our chat.message.* events (same form; bodies as the log holds them: encrypted)
    chat_history.jsonl       our conversations DECRYPTED, one message a line, in log order:
                             {event_id, lamport, from, to, direction, body, attachments, created_at,
                              delivered_at, read_at, decrypted, encrypted} (messages we sent and received)
    market.jsonl             our market.* events (same form)
    files.json               our pinned files: [{cid, name, size_bytes, advertised_event_id, advertised_at}]
    blobs.json               the files in this node's blob store:
                             [{cid, filename, size_bytes, pinned, complete}]
    settings.json            config_to_dict() without secrets
    CONTENTS.json            {format, format_version, node_id, community_id, created_at,
                              hearthnet_version, counts, files: [{name, size, hash}]}
    CONTENTS.sig             `ed25519:<b64url>` over the canonical JSON of CONTENTS.json

Every member is hashed (`blake3:<hex>`) into CONTENTS.json, and CONTENTS.json is signed by
the device key whose public half is the node id it names, so `verify_export` needs
nothing but the file. The event log is read directly from
`<community state dir>/events.sqlite`, read-only and inside one read transaction, so the
export is a consistent snapshot even while the node runs.

The export never holds a private key or the local API token: settings drop every key
that names one, and before the file is published every member is scanned for the
device key (raw, base64, base64url, hex) and the token; a hit aborts the export.
"""
from __future__ import annotations

import base64
import heapq
import json
import os
import re
import sqlite3
import tempfile
import zipfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from pathlib import Path
from typing import IO, Any

import blake3

from hearthnet.config import Config, config_to_dict
from hearthnet.errors import EXIT_AUTH, EXIT_OK, EXIT_USAGE, HearthNetError, IdentityError
from hearthnet.fsutil import fsync_dir
from hearthnet.identity import keys
from hearthnet.identity.canonical import canonical_json
from hearthnet.identity.keys import KeyPair, parse_node_id, verify_bytes, verify_payload_with_node_id
from hearthnet.identity.manifest import build_node_manifest, rfc3339
from hearthnet.version import __version__

FORMAT = "hearthnet-export"
FORMAT_VERSION = 1
CONTENTS = "CONTENTS.json"
CONTENTS_SIG = "CONTENTS.sig"
NODE_MANIFEST = "node_manifest.json"
COMMUNITY_MANIFEST = "community_manifest.json"
EVENTS = "events.jsonl"
CHAT = "chat.jsonl"
CHAT_HISTORY = "chat_history.jsonl"
MARKET = "market.jsonl"
FILES = "files.json"
BLOBS = "blobs.json"
BLOB_KEYS = ("cid", "filename", "size_bytes", "pinned", "complete")
SETTINGS = "settings.json"
EVENTS_DB = "events.sqlite"

CHAT_PREFIX = "chat.message."
MARKET_PREFIX = "market."
# The wire envelope (spec core-events-discovery §1); `received_at` is local bookkeeping.
ENVELOPE_FIELDS = ("schema_version", "event_id", "lamport", "wall_clock", "community_id",
                   "author", "event_type", "data", "signature")
# A settings key containing one of these words is dropped, except the ones listed:
# `api_key_env` holds only the NAME of an environment variable.
SECRET_WORDS = ("key", "token", "secret", "password")
NOT_SECRET = frozenset({"api_key_env"})
_URL_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/@\s]+@")

PKCS8_ED25519_PREFIX = bytes.fromhex("302e020100300506032b657004220420")  # RFC 8410 PrivateKeyInfo
ZIP_MODE = 0o600  # personal data: readable by the owner only
MAX_CONTENTS_BYTES = 16 * 1024 * 1024
CHUNK = 1 << 20

Progress = Callable[[str, int, int], None]  # (what, done, total)


class NotAnExport(HearthNetError):
    """The file is missing, unreadable, or not a HearthNet export (no CONTENTS.json)."""

    code = "not_an_export"

    @property
    def exit_code(self) -> int:
        return EXIT_USAGE


# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class Member:
    name: str
    size: int
    hash: str

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "size": self.size, "hash": self.hash}


@dataclass
class ExportResult:
    path: Path
    node_id: str
    community_id: str | None
    created_at: str
    members: list[Member]
    counts: dict[str, int]
    bytes: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": str(self.path), "node_id": self.node_id, "community_id": self.community_id,
            "created_at": self.created_at, "format_version": FORMAT_VERSION, "bytes": self.bytes,
            "files": [m.to_dict() for m in self.members], "counts": dict(self.counts),
        }


@dataclass
class VerifyResult:
    path: Path
    node_id: str
    created_at: str
    format_version: int
    files: list[dict[str, Any]]  # Member.to_dict() + "ok"
    problems: list[str] = field(default_factory=list)

    @property
    def valid(self) -> bool:
        return not self.problems

    @property
    def exit_code(self) -> int:
        return EXIT_OK if self.valid else EXIT_AUTH

    def to_dict(self) -> dict[str, Any]:
        return {
            "valid": self.valid, "path": str(self.path), "node_id": self.node_id,
            "created_at": self.created_at, "format_version": self.format_version,
            "files": self.files, "problems": list(self.problems),
        }


# --------------------------------------------------------------------------- paths


def default_export_path(today: date | None = None, home: Path | None = None) -> Path:
    day = (today or date.today()).isoformat()
    return (home or Path.home()) / f"hearthnet-export-{day}.zip"


def resolve_out_path(out: Path | None, *, force: bool) -> Path:
    """The file to write: `out` (a directory gets the default file name inside it) or
    ~/hearthnet-export-<date>.zip. Refuses an existing file unless `force`."""
    if out is None:
        path = default_export_path()
    else:
        out = Path(out).expanduser()
        path = default_export_path(home=out) if out.is_dir() else out
    path = path.absolute()
    if not path.parent.is_dir():
        raise HearthNetError("usage", f"the folder {path.parent} does not exist")
    if path.is_dir():
        raise HearthNetError("usage", f"{path} is a directory")
    if path.exists() and not force:
        raise HearthNetError("usage", f"{path} already exists",
                             hint="pass --force to replace it, or --out to choose another file")
    return path


# --------------------------------------------------------------------------- event log


def event_log_paths(cfg: Config) -> list[Path]:
    """Every community event log on this node: <DATA>/communities/*/events.sqlite
    (archived communities included) and the configured community's, wherever it is."""
    found: set[Path] = set()
    communities = cfg.paths.communities_dir
    if communities.is_dir():
        for sub in communities.iterdir():
            if (sub / EVENTS_DB).is_file():
                found.add(sub / EVENTS_DB)
    if cfg.community.state_dir is not None and (cfg.community.state_dir / EVENTS_DB).is_file():
        found.add(cfg.community.state_dir / EVENTS_DB)
    return sorted(found)


class OwnEvents:
    """The events one author wrote, read-only from one or more events.sqlite files. Each
    database is held in one read transaction while open, so every pass over it sees the
    same snapshot even if the ledger appends meanwhile."""

    def __init__(self, db_paths: Iterable[Path], author: str) -> None:
        self.db_paths = list(db_paths)
        self.author = author
        self._conns: list[tuple[Path, sqlite3.Connection]] = []
        self._stack = ExitStack()

    def __enter__(self) -> "OwnEvents":
        try:
            for path in self.db_paths:
                conn = self._open(path)
                self._stack.callback(conn.close)
                if _has_events_table(path, conn):
                    self._conns.append((path, conn))
        except BaseException:
            self._stack.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self._stack.close()

    @staticmethod
    def _open(path: Path) -> sqlite3.Connection:
        uri = path.absolute().as_uri() + "?mode=ro"
        try:
            conn = sqlite3.connect(uri, uri=True, isolation_level=None)
            conn.execute("BEGIN")  # one snapshot for every query below
        except sqlite3.Error as exc:
            raise _db_error(path, exc) from exc
        return conn

    def events(self, prefix: str | None = None) -> Iterator[dict[str, Any]]:
        """Our envelopes, optionally only those whose event_type starts with `prefix`,
        in (lamport, event_id) order across every log."""
        streams = [self._rows(path, conn, prefix) for path, conn in self._conns]
        return heapq.merge(*streams, key=lambda e: (e["lamport"], e["event_id"]))

    def everyones(self, prefix: str) -> Iterator[dict[str, Any]]:
        """Every author's envelopes whose event_type starts with `prefix` (the messages
        we received are our data too), in (lamport, event_id) order across every log."""
        streams = [self._rows(path, conn, prefix, anyone=True) for path, conn in self._conns]
        return heapq.merge(*streams, key=lambda e: (e["lamport"], e["event_id"]))

    def _rows(self, path: Path, conn: sqlite3.Connection, prefix: str | None,
              anyone: bool = False) -> Iterator[dict[str, Any]]:
        where, args = ("event_type LIKE ?", (prefix.replace("%", "") + "%",)) if anyone and prefix \
            else ("author = ?", (self.author,))
        sql = f"SELECT {', '.join(ENVELOPE_FIELDS)} FROM events WHERE {where} ORDER BY lamport, event_id"
        try:
            for row in conn.execute(sql, args):
                event = dict(zip(ENVELOPE_FIELDS, row))
                if prefix is not None and not str(event["event_type"]).startswith(prefix):
                    continue
                yield _envelope(path, event)
        except sqlite3.Error as exc:
            raise _db_error(path, exc) from exc


def _has_events_table(path: Path, conn: sqlite3.Connection) -> bool:
    try:
        row = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'events'").fetchone()
    except sqlite3.Error as exc:
        raise _db_error(path, exc) from exc
    return row is not None  # a log the ledger has not set up yet holds no events


def _envelope(path: Path, event: dict[str, Any]) -> dict[str, Any]:
    """The row as the signed wire envelope: `data` back to the object it was."""
    try:
        event["data"] = json.loads(event["data"])
    except (TypeError, ValueError) as exc:
        raise HearthNetError("db_corrupt", f"event {event['event_id']} in {path} has data that is "
                                           f"not JSON ({exc}); nothing was exported") from None
    return event


def _db_error(path: Path, exc: sqlite3.Error) -> HearthNetError:
    return HearthNetError("db_corrupt", f"cannot read the event log {path}: {exc}")


def pinned_files(events: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Our pinned CIDs: file.cid.advertised minus later file.cid.unpinned, in event
    order. The contract's advertised event carries no file name, so the name comes from
    the event if it has one, else from our own chat attachments ({cid, name}) or RAG
    ingests ({doc_cid, title}); otherwise null."""
    pinned: dict[str, dict[str, Any]] = {}
    names: dict[str, str] = {}
    for e in events:
        kind, data = e["event_type"], e["data"] if isinstance(e["data"], dict) else {}
        cid = data.get("cid")
        if kind == "file.cid.advertised" and isinstance(cid, str):
            pinned.pop(cid, None)
            pinned[cid] = {
                "cid": cid, "name": data.get("name") if isinstance(data.get("name"), str) else None,
                "size_bytes": data.get("sizes_bytes", data.get("size_bytes")),
                "advertised_event_id": e["event_id"], "advertised_at": e["wall_clock"],
            }
        elif kind == "file.cid.unpinned" and isinstance(cid, str):
            pinned.pop(cid, None)
        elif kind == "chat.message.sent":
            for att in data.get("attachments") or []:
                if isinstance(att, dict) and isinstance(att.get("cid"), str) and isinstance(att.get("name"), str):
                    names.setdefault(att["cid"], att["name"])
        elif kind == "rag.document.ingested":
            if isinstance(data.get("doc_cid"), str) and isinstance(data.get("title"), str):
                names.setdefault(data["doc_cid"], data["title"])
    out = list(pinned.values())
    for entry in out:
        if entry["name"] is None:
            entry["name"] = names.get(entry["cid"])
    return out


def store_files(cfg: Config) -> list[dict[str, Any]]:
    """The files in this node's blob store. While the node runs, its file worker (the
    store's only writer) lists them (`file.ls` through the local API); a stopped node's
    store is read directly. No store yet: none."""
    from hearthnet.errors import NodeNotRunning
    from hearthnet.localapi import LocalApi

    try:
        api = LocalApi.for_running_node(cfg.paths)
        reply = api.call("file.ls", "1.0", {"params": {}, "input": {}})
        files = ((reply.get("output") if isinstance(reply, dict) else None) or {}).get("files")
        if not isinstance(files, list):
            raise HearthNetError("bad_response", "the node's file.ls answer holds no file list")
    except NodeNotRunning:
        files = _stopped_store_files(cfg)
    return [{k: f.get(k) for k in BLOB_KEYS} for f in files if isinstance(f, dict)]


def _stopped_store_files(cfg: Config) -> list[dict[str, Any]]:
    from hearthnet.blobs.store import open_store

    if not Path(cfg.file.blobs_dir).is_dir():
        return []
    return open_store(cfg).blobs()


def chat_history(events: Iterable[dict[str, Any]], kp: KeyPair) -> Iterator[dict[str, Any]]:
    """Our conversations decrypted with the device key (in memory only), as chat.history
    shows them; a message that does not decrypt is listed with `body` null."""
    from hearthnet.services.chat.crypto import ChatCrypto
    from hearthnet.services.chat.view import ChatView

    view = ChatView(ChatCrypto(kp))
    for ev in events:
        view.apply(ev)
    for msg in view.history(limit=len(view.messages)):
        yield msg.to_wire(kp.node_id_full)


# --------------------------------------------------------------------------- settings


def _is_secret_key(key: str) -> bool:
    low = key.lower()
    return low not in NOT_SECRET and any(word in low for word in SECRET_WORDS)


def redact(obj: Any) -> Any:
    """Drop every key naming a key/token/secret/password; hide user:password@ in URLs."""
    if isinstance(obj, dict):
        return {k: redact(v) for k, v in obj.items() if not _is_secret_key(str(k))}
    if isinstance(obj, list):
        return [redact(v) for v in obj]
    if isinstance(obj, str):
        return _URL_USERINFO.sub(r"\1***@", obj)
    return obj


def settings_without_secrets(cfg: Config) -> dict[str, Any]:
    return redact(config_to_dict(cfg))


# --------------------------------------------------------------------------- secrets guard


def secret_forms(kp: KeyPair, token: str | None) -> list[bytes]:
    """Every text form the device key (and the API token) could take in a member."""
    forms: list[bytes] = []
    seed = bytes(kp.signing_key)
    # the seed, NaCl's 64-byte secret key, and the PKCS#8 DER inside <DATA>/tls/server.key
    # ... and the X25519 secret chat derives from it (crypto_sign_ed25519_sk_to_curve25519)
    x25519 = bytes(kp.signing_key.to_curve25519_private_key())
    for raw in (seed, seed + kp.public_bytes, PKCS8_ED25519_PREFIX + seed, x25519):
        forms += [
            raw,
            base64.b64encode(raw), base64.b64encode(raw).rstrip(b"="),
            base64.urlsafe_b64encode(raw), base64.urlsafe_b64encode(raw).rstrip(b"="),
            raw.hex().encode(), raw.hex().upper().encode(),
        ]
    if token:
        forms.append(token.encode("utf-8"))
    return sorted(set(forms), key=len)


def _read_token(cfg: Config) -> str | None:
    try:
        return cfg.paths.api_token_file.read_text(encoding="utf-8").strip() or None
    except OSError:
        return None  # no node running: no token to leak


def _scan_for_secrets(zip_path: Path, forms: list[bytes]) -> None:
    """Refuse to publish a file in which any member holds a secret."""
    if not forms:
        return
    longest = max(len(f) for f in forms)
    with zipfile.ZipFile(zip_path) as zf:
        for info in zf.infolist():
            if _looks_like_key_name(info.filename):
                raise HearthNetError("internal_error", f"refusing to write the export: member "
                                                       f"{info.filename} is named like a key")
            tail = b""
            with zf.open(info) as fh:
                while chunk := fh.read(CHUNK):
                    window = tail + chunk
                    if any(f in window for f in forms):
                        raise HearthNetError("internal_error", "refusing to write the export: "
                                             f"{info.filename} contains this device's private key "
                                             "or API token")
                    tail = window[-(longest - 1):] if longest > 1 else b""


_KEY_NAME = re.compile(r"(?i)(\.ed25519$|\.pem$|\.key$|private|secret|token|(^|[/_.-])keys?([/_.-]|$))")


def _looks_like_key_name(name: str) -> bool:
    return bool(_KEY_NAME.search(name))


# --------------------------------------------------------------------------- writing


class _HashingWriter:
    """Counts and BLAKE3-hashes what is written through it."""

    def __init__(self, fh: IO[bytes]) -> None:
        self.fh = fh
        self.size = 0
        self.hasher = blake3.blake3()

    def write(self, data: bytes) -> None:
        self.fh.write(data)
        self.size += len(data)
        self.hasher.update(data)

    def digest(self) -> str:
        return "blake3:" + self.hasher.hexdigest()


def _json_bytes(doc: Any) -> bytes:
    return (json.dumps(doc, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode("utf-8")


def _jsonl_writer(events: Callable[[], Iterator[dict[str, Any]]], counter: dict[str, int], key: str
                  ) -> Callable[[_HashingWriter], None]:
    def write(w: _HashingWriter) -> None:
        n = 0
        for e in events():
            w.write((json.dumps(e, sort_keys=True, ensure_ascii=False, separators=(",", ":")) + "\n").encode("utf-8"))
            n += 1
        counter[key] = n
    return write


def _bytes_writer(data: Callable[[], bytes]) -> Callable[[_HashingWriter], None]:
    return lambda w: w.write(data())


def _add_member(zf: zipfile.ZipFile, name: str, when: datetime,
                write: Callable[[_HashingWriter], None]) -> Member:
    info = zipfile.ZipInfo(name, date_time=when.timetuple()[:6])
    info.compress_type = zipfile.ZIP_DEFLATED
    info.external_attr = (0o100000 | ZIP_MODE) << 16  # a regular file, 0600
    with zf.open(info, "w") as fh:
        w = _HashingWriter(fh)
        write(w)
    return Member(name, w.size, w.digest())


def node_manifest_for(cfg: Config, kp: KeyPair) -> dict[str, Any]:
    from hearthnet.profile import detect_hardware

    return build_node_manifest(
        kp, display_name=cfg.node.display_name, community_id=cfg.community.community_id or "",
        profile=cfg.node.profile,
        endpoints=[{"transport": "http", "host": cfg.transport.host, "port": cfg.transport.port}],
        hardware=detect_hardware(cfg.paths.data_dir), capabilities=[], uptime_seconds=0,
        load={"cpu": 0.0, "vram_used_gb": 0.0, "in_flight_total": 0},
    )


def _community_manifest_bytes(cfg: Config) -> bytes | None:
    path = cfg.community_manifest_path
    if path is None:
        return None
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None


def build_export(cfg: Config, out: Path, *, force: bool = False, progress: Progress | None = None,
                 now: datetime | None = None) -> ExportResult:
    """Write the export to the file `out` (see `resolve_out_path`): a temp file beside it,
    renamed into place only when complete, signed and scanned for secrets. Without
    `force` an existing file is never replaced, even one that appears meanwhile."""
    if out.exists() and not force:
        raise HearthNetError("usage", f"{out} already exists",
                             hint="pass --force to replace it, or --out to choose another file")
    kp = keys.load(cfg.identity.keys_dir)
    created = (now or datetime.now(timezone.utc)).astimezone(timezone.utc).replace(microsecond=0)
    tick = progress or (lambda what, done, total: None)
    fd, tmp_name = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "w+b") as fh:
            os.fchmod(fh.fileno(), ZIP_MODE)
            contents = _write_zip(cfg, kp, fh, created, tick)
            fh.flush()
            os.fsync(fh.fileno())
        _scan_for_secrets(tmp, secret_forms(kp, _read_token(cfg)))
        _publish(tmp, out, replace=force)
    finally:
        tmp.unlink(missing_ok=True)
    members = [Member(**f) for f in contents["files"]]
    return ExportResult(out, kp.node_id_full, contents["community_id"], contents["created_at"],
                        members, contents["counts"], out.stat().st_size)


def _write_zip(cfg: Config, kp: KeyPair, fh: IO[bytes], created: datetime, tick: Progress) -> dict[str, Any]:
    counts: dict[str, int] = {}
    with OwnEvents(event_log_paths(cfg), kp.node_id_full) as log, \
            zipfile.ZipFile(fh, "w", compression=zipfile.ZIP_DEFLATED) as zf:

        blobs = store_files(cfg)

        def files_doc() -> bytes:
            files = pinned_files(log.events())
            names = {b["cid"]: b["filename"] for b in blobs if b.get("filename")}
            for f in files:
                f["name"] = f["name"] or names.get(f["cid"])
            counts["files"] = len(files)
            return _json_bytes(files)

        def blobs_doc() -> bytes:
            counts["blobs"] = len(blobs)
            return _json_bytes(blobs)

        community = _community_manifest_bytes(cfg)
        plan: list[tuple[str, Callable[[_HashingWriter], None]]] = [
            (NODE_MANIFEST, _bytes_writer(lambda: _json_bytes(node_manifest_for(cfg, kp)))),
        ]
        if community is not None:
            plan.append((COMMUNITY_MANIFEST, _bytes_writer(lambda: community)))
        plan += [
            (EVENTS, _jsonl_writer(log.events, counts, "events")),
            (CHAT, _jsonl_writer(lambda: log.events(CHAT_PREFIX), counts, "chat")),
            (CHAT_HISTORY, _jsonl_writer(lambda: chat_history(log.everyones(CHAT_PREFIX), kp), counts,
                                         "chat_history")),
            (MARKET, _jsonl_writer(lambda: log.events(MARKET_PREFIX), counts, "market")),
            (FILES, _bytes_writer(files_doc)),
            (BLOBS, _bytes_writer(blobs_doc)),
            (SETTINGS, _bytes_writer(lambda: _json_bytes(settings_without_secrets(cfg)))),
        ]
        total = len(plan) + 1
        members = []
        for i, (name, write) in enumerate(plan):
            tick(f"writing {name}", i, total)
            members.append(_add_member(zf, name, created, write))
        tick(f"signing {CONTENTS}", len(plan), total)
        contents = {
            "format": FORMAT, "format_version": FORMAT_VERSION, "node_id": kp.node_id_full,
            "community_id": cfg.community.community_id, "created_at": rfc3339(created),
            "hearthnet_version": __version__, "counts": counts,
            "files": [m.to_dict() for m in members],
        }
        _add_member(zf, CONTENTS, created, _bytes_writer(lambda: _json_bytes(contents)))
        signature = kp.sign_bytes(canonical_json(contents))
        _add_member(zf, CONTENTS_SIG, created, _bytes_writer(lambda: (signature + "\n").encode("ascii")))
        tick("done", total, total)
    return contents


def _publish(tmp: Path, out: Path, *, replace: bool) -> None:
    if replace:
        os.replace(tmp, out)
    else:
        try:
            os.link(tmp, out)  # fails if `out` appeared meanwhile: never clobber it
        except FileExistsError:
            raise HearthNetError("usage", f"{out} already exists",
                                 hint="pass --force to replace it, or --out to choose another file") from None
        except OSError:  # a filesystem without hard links
            if out.exists():
                raise HearthNetError("usage", f"{out} already exists") from None
            os.replace(tmp, out)
    fsync_dir(out.parent)


# --------------------------------------------------------------------------- verifying


def verify_export(path: Path) -> VerifyResult:
    """Check CONTENTS.sig against the node id inside CONTENTS.json, then every member's
    size and hash; also that nothing unlisted was added and that the node manifest is
    signed by the same node. Raises NotAnExport (exit 2) if the file cannot be read as
    an export; otherwise the result lists the problems (none = valid, exit 0; any = exit 4)."""
    path = Path(path).expanduser()
    try:
        zf = zipfile.ZipFile(path)
    except FileNotFoundError:
        raise NotAnExport(message=f"{path} does not exist") from None
    except (zipfile.BadZipFile, OSError) as exc:
        raise NotAnExport(message=f"{path} is not a ZIP file ({exc})") from None
    with zf:
        contents, signature = _read_contents(zf, path)
        node_id = contents["node_id"]
        problems: list[str] = []
        try:
            signed = verify_bytes(canonical_json(contents), signature, parse_node_id(node_id))
        except (IdentityError, TypeError, ValueError):
            signed = False
        if not signed:
            problems.append(f"{CONTENTS_SIG} is not a valid signature of {CONTENTS} by {node_id}")
        files = _check_members(zf, contents["files"], problems)
        _check_node_manifest(zf, node_id, files, problems)
    return VerifyResult(path, node_id, str(contents.get("created_at", "")), FORMAT_VERSION, files, problems)


def _read_contents(zf: zipfile.ZipFile, path: Path) -> tuple[dict[str, Any], str]:
    names = set(zf.namelist())
    missing = [n for n in (CONTENTS, CONTENTS_SIG) if n not in names]
    if missing:
        raise NotAnExport(message=f"{path} is not a HearthNet export (no {', '.join(missing)})")
    if zf.getinfo(CONTENTS).file_size > MAX_CONTENTS_BYTES:
        raise NotAnExport(message=f"{path}: {CONTENTS} is implausibly large")
    try:
        contents = json.loads(zf.read(CONTENTS).decode("utf-8"))
        signature = zf.read(CONTENTS_SIG)[:1024].decode("ascii").strip()
    except (zipfile.BadZipFile, UnicodeDecodeError, ValueError, OSError) as exc:
        raise NotAnExport(message=f"{path}: cannot read {CONTENTS} ({exc})") from None
    if not isinstance(contents, dict) or contents.get("format") != FORMAT:
        raise NotAnExport(message=f"{path}: {CONTENTS} does not describe a HearthNet export")
    if contents.get("format_version") != FORMAT_VERSION:
        raise NotAnExport(message=f"{path}: export format {contents.get('format_version')!r} "
                                  f"is not supported (this hearthnet reads {FORMAT_VERSION})")
    files = contents.get("files")
    if not isinstance(contents.get("node_id"), str) or not isinstance(files, list) or not all(
        isinstance(f, dict) and isinstance(f.get("name"), str) and isinstance(f.get("hash"), str)
        and isinstance(f.get("size"), int) and not isinstance(f.get("size"), bool) for f in files
    ):
        raise NotAnExport(message=f"{path}: {CONTENTS} lacks node_id or a well-formed files list")
    return contents, signature


def _check_members(zf: zipfile.ZipFile, listed: list[dict[str, Any]], problems: list[str]) -> list[dict[str, Any]]:
    names = zf.namelist()
    for dup in sorted({n for n in names if names.count(n) > 1}):
        problems.append(f"{dup} appears more than once in the ZIP")
    listed_names = {f["name"] for f in listed}
    for extra in sorted(set(names) - listed_names - {CONTENTS, CONTENTS_SIG}):
        problems.append(f"{extra} is in the ZIP but not listed in {CONTENTS}")
    out = []
    for f in listed:
        problem = _check_member(zf, f)
        if problem:
            problems.append(problem)
        out.append({"name": f["name"], "size": f["size"], "hash": f["hash"], "ok": problem is None})
    return out


def _check_member(zf: zipfile.ZipFile, f: dict[str, Any]) -> str | None:
    name, size = f["name"], f["size"]
    try:
        info = zf.getinfo(name)
    except KeyError:
        return f"{name} is listed in {CONTENTS} but missing from the ZIP"
    hasher, seen = blake3.blake3(), 0
    try:
        with zf.open(info) as fh:
            # Never read more than the signed size (+1 to notice growth): no zip bombs.
            while seen <= size and (chunk := fh.read(min(CHUNK, size + 1 - seen))):
                hasher.update(chunk)
                seen += len(chunk)
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        return f"{name} is corrupt ({exc})"
    if seen != size:
        return f"{name} has {'more than ' if seen > size else ''}{seen} bytes, {CONTENTS} says {size}"
    if "blake3:" + hasher.hexdigest() != f["hash"]:
        return f"{name} does not match its hash in {CONTENTS} (modified?)"
    return None


def _check_node_manifest(zf: zipfile.ZipFile, node_id: str, files: list[dict[str, Any]],
                         problems: list[str]) -> None:
    if not any(f["name"] == NODE_MANIFEST and f["ok"] for f in files):
        return  # missing or already reported
    try:
        manifest = json.loads(zf.read(NODE_MANIFEST).decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        problems.append(f"{NODE_MANIFEST} is not JSON ({exc})")
        return
    if not isinstance(manifest, dict) or manifest.get("node_id") != node_id:
        problems.append(f"{NODE_MANIFEST} belongs to another node than {CONTENTS}")
    elif not verify_payload_with_node_id(manifest, node_id):
        problems.append(f"{NODE_MANIFEST} has a bad signature")
