"""Export holds the owner's conversations decrypted; erase leaves nothing that decrypts them.

Chat keeps no key material of its own: the X25519 secret is derived in memory from the
device key whenever a process needs it. So erasing the device key (`<DATA>/keys`) must
leave a message in another member's log unreadable by anything left on this machine."""
from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path

import pytest

from hearthnet import erase, export
from hearthnet.errors import HearthNetError
from hearthnet.identity import keys
from hearthnet.services.chat.crypto import ENC_SCHEME, ChatCrypto, Undecryptable
from tests.unit.test_export import make_node, signed_event, write_events
from tests.unit.xdg_fixture import isolated_xdg  # noqa: F401  (autouse)

CID = "blake3:" + "cd" * 32


def chat_events(kp: keys.KeyPair, other: keys.KeyPair, community: str) -> list[dict]:
    def sent(author: keys.KeyPair, to: keys.KeyPair, text: str, lamport: int, atts: list | None = None) -> dict:
        ct = ChatCrypto(author).encrypt(to.node_id_full, text, atts or [])
        return signed_event(author, community, lamport, "chat.message.sent",
                            {"client_id": f"c{lamport}", "recipient": to.node_id_full, "body": ct,
                             "attachments": [], "enc": ENC_SCHEME})

    inbound = sent(other, kp, "the bridge is closed", 100)
    outbound = sent(kp, other, "thanks, taking the ford", 102, [{"cid": CID, "name": "map.png"}])
    stranger = keys.generate()
    elsewhere = sent(other, stranger, "not about you", 103)
    read = signed_event(kp, community, 101, "chat.message.read",
                        {"target_event_id": inbound["event_id"], "read_at": "2026-12-01T10:00:00Z"})
    return [inbound, read, outbound, elsewhere]


def test_export_holds_our_conversations_decrypted(tmp_path: Path) -> None:
    cfg, kp = make_node()
    other = keys.generate()
    assert cfg.community.state_dir is not None and cfg.community.community_id is not None
    events = chat_events(kp, other, cfg.community.community_id)
    write_events(cfg.community.state_dir / "events.sqlite", events)
    out = tmp_path / "export.zip"
    result = export.build_export(cfg, out)
    with zipfile.ZipFile(out) as zf:
        lines = [json.loads(line) for line in zf.read("chat_history.jsonl").splitlines()]
        chat_raw = zf.read("chat.jsonl") + zf.read("events.jsonl")
    assert [(m["direction"], m["body"]) for m in lines] == [("in", "the bridge is closed"),
                                                            ("out", "thanks, taking the ford")]
    assert lines[0]["from"] == other.node_id_full and lines[0]["read_at"] == "2026-12-01T10:00:00Z"
    assert lines[1]["attachments"] == [{"cid": CID, "name": "map.png"}] and all(m["decrypted"] for m in lines)
    assert b"taking the ford" not in chat_raw  # the log's own copies stay as they are: encrypted
    assert result.counts["chat_history"] == 2


def test_the_derived_chat_secret_is_never_exported() -> None:
    kp = keys.generate()
    forms = export.secret_forms(kp, None)
    x25519 = bytes(kp.signing_key.to_curve25519_private_key())
    assert x25519 in forms and x25519.hex().encode() in forms


def test_after_erase_nothing_left_decrypts_our_messages() -> None:
    cfg, kp = make_node()
    other = keys.generate()
    assert cfg.community.state_dir is not None and cfg.community.community_id is not None
    inbound, _read, outbound, _ = chat_events(kp, other, cfg.community.community_id)
    write_events(cfg.community.state_dir / "events.sqlite", [inbound, outbound])
    assert ChatCrypto(kp).decrypt(inbound)["body"] == "the bridge is closed"  # before: readable here
    secrets = [bytes(kp.signing_key), bytes(kp.signing_key.to_curve25519_private_key())]

    result = erase.erase_node(erase.plan_erase(cfg), confirm=None, on_event=lambda kind, data: None)
    assert result.exit_code == 0, result.to_dict()

    # the other member still holds both messages; nothing on this machine can open them
    with pytest.raises(HearthNetError):
        keys.load(cfg.identity.keys_dir)
    root = cfg.paths.data_dir.parent.parent  # data, config, cache, state of this node
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            data = (Path(dirpath) / name).read_bytes()
            for secret in secrets:
                assert secret not in data and secret.hex().encode() not in data, f"{dirpath}/{name}"
    # a node set up again in the same place gets a new key, which opens nothing
    _cfg2, kp2 = make_node("again")
    assert kp2.node_id_full != kp.node_id_full
    for ev in (inbound, outbound):
        with pytest.raises(Undecryptable):
            ChatCrypto(kp2).decrypt(ev)
    assert ChatCrypto(other).decrypt(outbound)["body"] == "thanks, taking the ford"  # still the other's to read
