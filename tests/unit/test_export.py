"""hearthnet.export: the signed GDPR export and its checker.

The ledger writes events.sqlite (`init` may already have written the 3 genesis events);
these tests add to it, or create it, with the same schema (spec core-events-discovery §4)
and properly signed envelopes. The helpers
at the top are shared with the erase and CLI tests."""
from __future__ import annotations

import base64
import json
import random
import sqlite3
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import blake3
import pytest

from hearthnet import export
from hearthnet.config import Config, load_config, update_config_file
from hearthnet.errors import HearthNetError
from hearthnet.identity import keys
from hearthnet.identity.canonical import canonical_json
from hearthnet.identity.keys import KeyPair, sign_payload, verify_bytes, verify_payload_with_node_id
from hearthnet.node_init import DefaultsPrompter, InitOptions, init_node
from tests.unit.xdg_fixture import isolated_xdg  # noqa: F401  (autouse)

# The ledger's schema (spec core-events-discovery §4), index names included: the ledger
# refuses to open a log whose schema differs, and a node may run on what a test wrote.
EVENTS_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    event_id TEXT PRIMARY KEY, community_id TEXT NOT NULL, schema_version INTEGER NOT NULL DEFAULT 1,
    lamport INTEGER NOT NULL, wall_clock TEXT NOT NULL, author TEXT NOT NULL, event_type TEXT NOT NULL,
    data TEXT NOT NULL, signature TEXT NOT NULL, received_at TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS events_by_lamport ON events (community_id, lamport, event_id);
CREATE INDEX IF NOT EXISTS events_by_type ON events (community_id, event_type, lamport);
CREATE TABLE IF NOT EXISTS clock (community_id TEXT PRIMARY KEY, lamport INTEGER NOT NULL);
"""
CID_A = "blake3:" + "a" * 64
CID_B = "blake3:" + "b" * 64
CID_C = "blake3:" + "c" * 64
MEMBERS = ["node_manifest.json", "community_manifest.json", "events.jsonl", "chat.jsonl", "chat_history.jsonl",
           "market.jsonl",
           "files.json", "blobs.json", "settings.json", "CONTENTS.json", "CONTENTS.sig"]


# ----------------------------------------------------------------------------- helpers


def make_node(name: str = "kitchen") -> tuple[Config, KeyPair]:
    """A real initialised node in the isolated XDG dirs (keys, config, genesis manifest)."""
    init_node(InitOptions(name=name, profile="hearth", interactive=False, config_path=None,
                          community_name="Maple Street"), prompt=DefaultsPrompter())
    cfg = load_config()
    return cfg, keys.load(cfg.identity.keys_dir)


def signed_event(kp: KeyPair, community_id: str, lamport: int, event_type: str, data: dict[str, Any],
                 event_id: str | None = None) -> dict[str, Any]:
    envelope = {
        "schema_version": 1, "event_id": event_id or f"01JD{lamport:06d}{random.randrange(16**16):016X}",
        "lamport": lamport, "wall_clock": f"2026-11-26T10:{lamport % 60:02d}:00Z",
        "community_id": community_id, "author": kp.node_id_full, "event_type": event_type, "data": data,
    }
    return sign_payload(envelope, kp)


def write_events(db: Path, events: list[dict[str, Any]]) -> None:
    """Insert envelopes as the ledger stores them (data as JSON text), in the given order,
    into a new or existing log, keeping its Lamport clock in step."""
    db.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(db)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.executescript(EVENTS_SCHEMA)
        conn.executemany(
            "INSERT INTO events (event_id, community_id, schema_version, lamport, wall_clock, author, "
            "event_type, data, signature, received_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [(e["event_id"], e["community_id"], e["schema_version"], e["lamport"], e["wall_clock"], e["author"],
              e["event_type"], json.dumps(e["data"]), e["signature"], "2026-11-26T11:00:00Z") for e in events],
        )
        for cid, lamport in {e["community_id"]: 0 for e in events}.items():
            head = max(e["lamport"] for e in events if e["community_id"] == cid)
            conn.execute("INSERT INTO clock (community_id, lamport) VALUES (?, ?) ON CONFLICT(community_id) "
                         "DO UPDATE SET lamport = MAX(lamport, excluded.lamport)", (cid, head))
        conn.commit()
    finally:
        conn.close()


def stored_events(db: Path, author: str) -> list[dict[str, Any]]:
    """What the log already holds by `author` (e.g. the genesis events `init` wrote)."""
    if not db.exists():
        return []
    conn = sqlite3.connect(db)
    try:
        rows = conn.execute("SELECT schema_version, event_id, lamport, wall_clock, community_id, author, "
                            "event_type, data, signature FROM events WHERE author = ?", (author,)).fetchall()
    finally:
        conn.close()
    keys_ = ("schema_version", "event_id", "lamport", "wall_clock", "community_id", "author", "event_type",
             "data", "signature")
    return [{**dict(zip(keys_, r)), "data": json.loads(r[7])} for r in rows]


@dataclass
class Scenario:
    cfg: Config
    kp: KeyPair
    other: KeyPair
    db: Path
    ours: list[dict[str, Any]]
    theirs: list[dict[str, Any]]


def populate(cfg: Config, kp: KeyPair, seed: int = 7) -> Scenario:
    """Our genesis events (unless `init` already wrote them), chat, market and file
    events, plus a neighbour's, inserted in shuffled order (two of ours share a lamport,
    to pin the event_id tie-break)."""
    cid = cfg.community.community_id
    assert cid is not None and cfg.community.state_dir is not None
    db = cfg.community.state_dir / "events.sqlite"
    other = keys.generate()
    existing = stored_events(db, kp.node_id_full)
    genesis = existing or [
        signed_event(kp, cid, 1, "community.created", {"name": "Maple Street", "founder_node_id": kp.node_id_full,
                                                       "policy": {"min_signatures_to_invite": 1}}),
        signed_event(kp, cid, 2, "community.member.invited", {"invitee_node_id": kp.node_id_full,
                                                              "display_name": "kitchen", "initial_level": "anchor",
                                                              "expires_at": "2026-11-27T10:00:00Z"}),
        signed_event(kp, cid, 3, "community.member.joined", {"invite_event_id": "x", "node_manifest": {}}),
    ]
    assert [e["event_type"] for e in ordered(genesis)] == [
        "community.created", "community.member.invited", "community.member.joined"]
    h = max(e["lamport"] for e in genesis)
    new = [
        signed_event(kp, cid, h + 2, "chat.message.sent", {"client_id": "c1", "recipient": other.node_id_full,
                                                           "body": "Soup at 7? ünïcødé ✓",
                                                           "attachments": [{"cid": CID_A, "name": "photo.jpg"}]}),
        signed_event(kp, cid, h + 3, "market.post.created", {"client_id": "m1", "category": "offer",
                                                             "title": "Ladder", "body": "Free ladder",
                                                             "location": {"lat": 1.5, "lng": 2.25, "label": "porch"},
                                                             "tags": ["tools"], "ttl_seconds": 86400}),
        signed_event(kp, cid, h + 4, "file.cid.advertised", {"cid": CID_A, "sizes_bytes": 1234}),
        signed_event(kp, cid, h + 5, "file.cid.advertised", {"cid": CID_B, "sizes_bytes": 99, "name": "notes.txt"}),
        signed_event(kp, cid, h + 6, "file.cid.unpinned", {"cid": CID_B}),
        signed_event(kp, cid, h + 8, "chat.message.read", {"target_event_id": "y", "read_at": "2026-11-26T10:11:00Z"},
                     event_id="01JD0000110000000000000000B"),
        signed_event(kp, cid, h + 8, "market.post.expired", {"client_id": "m1", "target_event_id": "z",
                                                             "reason": "fulfilled"},
                     event_id="01JD0000110000000000000000A"),
    ]
    theirs = [
        signed_event(other, cid, h + 1, "chat.message.sent", {"client_id": "c0", "recipient": kp.node_id_full,
                                                              "body": "hi", "attachments": []}),
        signed_event(other, cid, h + 3, "market.post.created", {"client_id": "m9", "category": "request",
                                                                "title": "Eggs", "body": "", "location": {},
                                                                "tags": [], "ttl_seconds": 60}),
        signed_event(other, cid, h + 4, "file.cid.advertised", {"cid": CID_C, "sizes_bytes": 5}),
    ]
    rows = (new if existing else genesis + new) + theirs
    random.Random(seed).shuffle(rows)
    write_events(db, rows)
    return Scenario(cfg, kp, other, db, genesis + new, theirs)


def ordered(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(events, key=lambda e: (e["lamport"], e["event_id"]))


def read_jsonl(zf: zipfile.ZipFile, name: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in zf.read(name).decode("utf-8").splitlines()]


def rewrite_zip(src: Path, dst: Path, replace: dict[str, bytes], add: dict[str, bytes] | None = None) -> None:
    """Copy an export, swapping some members' bytes (a tampered export)."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for info in zin.infolist():
            zout.writestr(info.filename, replace.get(info.filename, zin.read(info.filename)))
        for name, data in (add or {}).items():
            zout.writestr(name, data)


@pytest.fixture
def scenario() -> Scenario:
    cfg, kp = make_node()
    return populate(cfg, kp)


# ----------------------------------------------------------------------------- export


def test_export_zip_is_signed_and_parseable(scenario: Scenario, tmp_path: Path) -> None:
    out = tmp_path / "export.zip"
    result = export.build_export(scenario.cfg, out)
    assert result.path == out and result.node_id == scenario.kp.node_id_full
    with zipfile.ZipFile(out) as zf:
        assert zf.namelist() == MEMBERS
        contents = json.loads(zf.read("CONTENTS.json"))
        assert contents["format"] == "hearthnet-export" and contents["format_version"] == 1
        assert contents["node_id"] == scenario.kp.node_id_full
        assert contents["created_at"].endswith("Z")
        signature = zf.read("CONTENTS.sig").decode("ascii").strip()
        assert signature.startswith("ed25519:")
        assert verify_bytes(canonical_json(contents), signature, scenario.kp.verify_key)
        listed = {f["name"]: f for f in contents["files"]}
        assert set(listed) == set(MEMBERS) - {"CONTENTS.json", "CONTENTS.sig"}
        for name, f in listed.items():
            data = zf.read(name)
            assert f["size"] == len(data)
            assert f["hash"] == "blake3:" + blake3.blake3(data).hexdigest()
            if name.endswith(".jsonl"):
                read_jsonl(zf, name)  # every line parses
            else:
                json.loads(data)
        manifest = json.loads(zf.read("node_manifest.json"))
        assert manifest["node_id"] == scenario.kp.node_id_full and verify_payload_with_node_id(manifest, manifest["node_id"])
        assert set(manifest["hardware"]) == {"gpu", "vram_gb", "ram_gb", "cpu_cores", "disk_free_gb"}
        assert json.loads(zf.read("community_manifest.json"))["name"] == "Maple Street"
        assert contents["counts"] == {"events": 10, "chat": 2, "chat_history": 2, "market": 2, "files": 1, "blobs": 0}
    assert (out.stat().st_mode & 0o777) == 0o600
    assert export.verify_export(out).valid


def test_events_are_our_verbatim_envelopes_in_lamport_order(scenario: Scenario, tmp_path: Path) -> None:
    out = tmp_path / "e.zip"
    export.build_export(scenario.cfg, out)
    with zipfile.ZipFile(out) as zf:
        events = read_jsonl(zf, "events.jsonl")
        chat = read_jsonl(zf, "chat.jsonl")
        market = read_jsonl(zf, "market.jsonl")
    assert events == ordered(scenario.ours)  # exactly ours, ties broken by event_id
    assert [e["lamport"] for e in events][-2:] == [11, 11] and events[-2]["event_id"] < events[-1]["event_id"]
    assert all(verify_payload_with_node_id(e, scenario.kp.node_id_full) for e in events)  # verbatim
    assert set(events[0]) == set(export.ENVELOPE_FIELDS)
    assert isinstance(events[0]["data"], dict)
    assert [e["event_type"] for e in chat] == ["chat.message.sent", "chat.message.read"]
    assert [e["event_type"] for e in market] == ["market.post.created", "market.post.expired"]
    assert chat[0]["data"]["body"] == "Soup at 7? ünïcødé ✓"


def test_files_are_pinned_minus_unpinned_with_names(scenario: Scenario, tmp_path: Path) -> None:
    out = tmp_path / "f.zip"
    export.build_export(scenario.cfg, out)
    with zipfile.ZipFile(out) as zf:
        files = json.loads(zf.read("files.json"))
    assert [(f["cid"], f["name"], f["size_bytes"]) for f in files] == [(CID_A, "photo.jpg", 1234)]


def test_pinned_files_readvertise_after_unpin() -> None:
    def ev(kind: str, data: dict[str, Any], n: int) -> dict[str, Any]:
        return {"event_type": kind, "data": data, "event_id": str(n), "wall_clock": "t"}

    files = export.pinned_files([
        ev("file.cid.advertised", {"cid": CID_A}, 1), ev("file.cid.unpinned", {"cid": CID_A}, 2),
        ev("file.cid.advertised", {"cid": CID_B, "name": "b"}, 3), ev("file.cid.advertised", {"cid": CID_A}, 4),
        ev("rag.document.ingested", {"doc_cid": CID_A, "title": "Handbook"}, 5),
    ])
    assert [(f["cid"], f["name"], f["advertised_event_id"]) for f in files] == [(CID_B, "b", "3"), (CID_A, "Handbook", "4")]


def drop_event_log(cfg: Config) -> Path:
    """A node whose ledger has not written its log yet."""
    db = cfg.community.state_dir / "events.sqlite"
    for p in (db, db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm")):
        p.unlink(missing_ok=True)
    return db


def test_export_without_event_log_has_empty_members(tmp_path: Path) -> None:
    cfg, kp = make_node()
    drop_event_log(cfg)
    out = tmp_path / "empty.zip"
    result = export.build_export(cfg, out)
    with zipfile.ZipFile(out) as zf:
        assert zf.read("events.jsonl") == b"" and zf.read("chat.jsonl") == b"" and zf.read("market.jsonl") == b""
        assert json.loads(zf.read("files.json")) == []
    assert result.counts == {"events": 0, "chat": 0, "chat_history": 0, "market": 0, "files": 0, "blobs": 0}


def test_export_of_a_log_the_test_created_itself(tmp_path: Path) -> None:
    """Before the ledger writes genesis events at init, the log is whatever is there."""
    cfg, kp = make_node()
    drop_event_log(cfg)
    sc = populate(cfg, kp)
    out = tmp_path / "own.zip"
    export.build_export(cfg, out)
    with zipfile.ZipFile(out) as zf:
        assert read_jsonl(zf, "events.jsonl") == ordered(sc.ours)
    assert export.verify_export(out).valid


def test_export_reads_archived_communities_too(scenario: Scenario, tmp_path: Path) -> None:
    archived = scenario.cfg.paths.communities_dir / "ed25519:old.archived" / "events.sqlite"
    old = signed_event(scenario.kp, "ed25519:old", 4, "chat.message.sent", {"client_id": "o", "body": "old"})
    write_events(archived, [old])
    out = tmp_path / "a.zip"
    export.build_export(scenario.cfg, out)
    with zipfile.ZipFile(out) as zf:
        events = read_jsonl(zf, "events.jsonl")
    assert events == ordered(scenario.ours + [old])


def test_event_log_without_table_is_empty_and_a_broken_one_is_an_error(tmp_path: Path) -> None:
    cfg, _ = make_node()
    db = drop_event_log(cfg)
    sqlite3.connect(db).close()  # a log file without the schema yet
    export.build_export(cfg, tmp_path / "ok.zip")
    db.write_bytes(b"this is not a database" * 100)
    with pytest.raises(HearthNetError) as err:
        export.build_export(cfg, tmp_path / "bad.zip")
    assert err.value.code == "db_corrupt"
    assert not (tmp_path / "bad.zip").exists()


def test_settings_drop_secrets_but_keep_api_key_env(tmp_path: Path) -> None:
    cfg, _ = make_node()
    update_config_file(cfg.source, {
        "llm": {"backends": [{"name": "openai", "url": "http://alice:hunter2@127.0.0.1:8080/v1",
                              "model": "m", "api_key_env": "OPENAI_API_KEY"}]},
        "transport": {"tls_cert": str(tmp_path / "cert.pem"), "tls_key": str(tmp_path / "cert.key")},
    })
    settings = export.settings_without_secrets(load_config())
    text = json.dumps(settings)
    assert "keys_dir" not in settings["identity"] and "tls_key" not in settings["transport"]
    assert settings["transport"]["tls_cert"].endswith("cert.pem")
    assert settings["llm"]["backends"][0]["api_key_env"] == "OPENAI_API_KEY"
    assert "hunter2" not in text and "alice" not in text
    assert settings["llm"]["backends"][0]["url"] == "http://***@127.0.0.1:8080/v1"
    assert settings["node"]["display_name"] == "kitchen"


def test_secrets_never_exported(scenario: Scenario, tmp_path: Path) -> None:
    cfg, kp = scenario.cfg, scenario.kp
    token = "tok-" + "Z" * 40
    cfg.paths.run_dir.mkdir(parents=True, exist_ok=True)
    cfg.paths.api_token_file.write_text(token)  # as if the node were running
    out = tmp_path / "s.zip"
    export.build_export(cfg, out)
    key_file = (cfg.identity.keys_dir / "device.ed25519").read_bytes()
    seed = bytes(kp.signing_key)
    assert key_file == seed
    pkcs8 = bytes.fromhex("302e020100300506032b657004220420") + seed  # <DATA>/tls/server.key's DER
    forbidden = {seed, seed + kp.public_bytes, pkcs8, token.encode()}
    for raw in (seed, seed + kp.public_bytes, pkcs8):
        forbidden |= {base64.b64encode(raw), base64.b64encode(raw).rstrip(b"="), base64.urlsafe_b64encode(raw),
                      base64.urlsafe_b64encode(raw).rstrip(b"="), raw.hex().encode(), raw.hex().upper().encode()}
    raw_zip = out.read_bytes()
    with zipfile.ZipFile(out) as zf:
        for info in zf.infolist():
            data = zf.read(info)
            for secret in forbidden:
                assert secret not in data, f"{info.filename} leaks a secret"
            name = info.filename.lower()
            assert not any(word in name for word in ("key", "token", "secret", ".ed25519", ".pem", "private"))
    assert all(secret not in raw_zip for secret in forbidden if len(secret) > 8)
    # the guard itself can fail: a member that holds the key is never published
    assert export.secret_forms(kp, token) and all(f in export.secret_forms(kp, token) for f in forbidden)


def test_export_refuses_to_publish_a_leaking_member(scenario: Scenario, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    leaked = base64.urlsafe_b64encode(bytes(scenario.kp.signing_key)).rstrip(b"=").decode()
    monkeypatch.setattr(export, "settings_without_secrets", lambda cfg: {"oops": leaked})
    out = tmp_path / "leak.zip"
    with pytest.raises(HearthNetError, match="private key"):
        export.build_export(scenario.cfg, out)
    assert not out.exists() and list(tmp_path.glob(".leak.zip.*")) == []


def test_export_is_atomic_on_failure(scenario: Scenario, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(cfg: Config) -> Any:
        raise KeyboardInterrupt

    monkeypatch.setattr(export, "settings_without_secrets", boom)
    outdir = tmp_path / "out"
    outdir.mkdir()
    with pytest.raises(KeyboardInterrupt):
        export.build_export(scenario.cfg, outdir / "x.zip")
    assert list(outdir.iterdir()) == []  # neither the file nor its temp file


def test_export_refuses_to_overwrite_unless_forced(scenario: Scenario, tmp_path: Path) -> None:
    out = tmp_path / "x.zip"
    out.write_bytes(b"precious")
    with pytest.raises(HearthNetError) as err:
        export.resolve_out_path(out, force=False)
    assert err.value.exit_code == 2
    with pytest.raises(HearthNetError):
        export.build_export(scenario.cfg, out)
    assert out.read_bytes() == b"precious"
    export.build_export(scenario.cfg, export.resolve_out_path(out, force=True), force=True)
    assert export.verify_export(out).valid


def test_out_path_defaults_and_folders(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    import datetime as dt

    assert export.resolve_out_path(None, force=False) == tmp_path / f"hearthnet-export-{dt.date.today().isoformat()}.zip"
    assert export.resolve_out_path(tmp_path, force=False).parent == tmp_path
    with pytest.raises(HearthNetError, match="does not exist"):
        export.resolve_out_path(tmp_path / "nope" / "x.zip", force=False)


# ----------------------------------------------------------------------------- verify


@pytest.fixture
def good_export(scenario: Scenario, tmp_path: Path) -> Path:
    out = tmp_path / "good.zip"
    export.build_export(scenario.cfg, out)
    return out


def test_verify_tampered_member_is_exit_4(good_export: Path, tmp_path: Path) -> None:
    with zipfile.ZipFile(good_export) as zf:
        events = zf.read("events.jsonl")
    bad = tmp_path / "bad.zip"
    rewrite_zip(good_export, bad, {"events.jsonl": events.replace(b"Soup at 7", b"Soup at 8")})
    result = export.verify_export(bad)
    assert not result.valid and result.exit_code == 4
    assert any("events.jsonl" in p and "hash" in p for p in result.problems)
    assert [f["name"] for f in result.files if not f["ok"]] == ["events.jsonl"]


def test_verify_rehashed_contents_fails_the_signature(good_export: Path, tmp_path: Path) -> None:
    with zipfile.ZipFile(good_export) as zf:
        settings = zf.read("settings.json").replace(b"kitchen", b"mallory")
        contents = json.loads(zf.read("CONTENTS.json"))
    for f in contents["files"]:
        if f["name"] == "settings.json":
            f["size"], f["hash"] = len(settings), "blake3:" + blake3.blake3(settings).hexdigest()
    bad = tmp_path / "bad.zip"
    rewrite_zip(good_export, bad, {"settings.json": settings, "CONTENTS.json": json.dumps(contents).encode()})
    result = export.verify_export(bad)
    assert result.exit_code == 4
    assert result.problems == [f"CONTENTS.sig is not a valid signature of CONTENTS.json by {contents['node_id']}"]


def test_verify_resigned_by_another_key_is_caught(good_export: Path, tmp_path: Path) -> None:
    """Re-signing everything with another key changes the node id, so the node manifest
    (signed by the real key) no longer matches."""
    mallory = keys.generate()
    with zipfile.ZipFile(good_export) as zf:
        contents = json.loads(zf.read("CONTENTS.json"))
    contents["node_id"] = mallory.node_id_full
    bad = tmp_path / "bad.zip"
    rewrite_zip(good_export, bad, {"CONTENTS.json": json.dumps(contents).encode(),
                                   "CONTENTS.sig": mallory.sign_bytes(canonical_json(contents)).encode()})
    result = export.verify_export(bad)
    assert result.exit_code == 4 and any("node_manifest.json" in p for p in result.problems)


def test_verify_extra_or_missing_member_is_exit_4(good_export: Path, tmp_path: Path) -> None:
    extra = tmp_path / "extra.zip"
    rewrite_zip(good_export, extra, {}, add={"evil.sh": b"rm -rf ~"})
    assert export.verify_export(extra).exit_code == 4
    missing = tmp_path / "missing.zip"
    with zipfile.ZipFile(good_export) as zin, zipfile.ZipFile(missing, "w") as zout:
        for info in zin.infolist():
            if info.filename != "chat.jsonl":
                zout.writestr(info.filename, zin.read(info))
    result = export.verify_export(missing)
    assert result.exit_code == 4 and any("chat.jsonl" in p and "missing" in p for p in result.problems)


def test_verify_signature_garbage_is_exit_4(good_export: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.zip"
    rewrite_zip(good_export, bad, {"CONTENTS.sig": b"ed25519:not-a-signature"})
    assert export.verify_export(bad).exit_code == 4


@pytest.mark.parametrize("make", ["missing", "text", "no_contents", "not_json", "foreign", "version"])
def test_verify_not_an_export_is_exit_2(good_export: Path, tmp_path: Path, make: str) -> None:
    path = tmp_path / f"{make}.zip"
    if make == "text":
        path.write_text("hello")
    elif make == "no_contents":
        with zipfile.ZipFile(path, "w") as zf:
            zf.writestr("events.jsonl", "")
    elif make == "not_json":
        rewrite_zip(good_export, path, {"CONTENTS.json": b"{not json"})
    elif make == "foreign":
        rewrite_zip(good_export, path, {"CONTENTS.json": b'{"format": "something-else"}'})
    elif make == "version":
        with zipfile.ZipFile(good_export) as zf:
            contents = json.loads(zf.read("CONTENTS.json"))
        contents["format_version"] = 99
        rewrite_zip(good_export, path, {"CONTENTS.json": json.dumps(contents).encode()})
    with pytest.raises(export.NotAnExport) as err:
        export.verify_export(path)
    assert err.value.exit_code == 2
