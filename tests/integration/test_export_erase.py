"""Export and erase against a real running node (supervisord, broker, gateway, workers):
`hearthnet export` works while it runs and verifies; `hearthnet erase --yes` stops the
whole tree (no process left) and wipes it."""
from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest

from hearthnet.identity import keys
from hearthnet.testing.waiting import wait_for
from tests.unit.test_export import signed_event, stored_events, write_events

pytestmark = pytest.mark.integration


def seed_events(node) -> tuple[dict, int]:
    """Add a chat message of ours and one of a neighbour to the log `init` started (or
    start it, with our community.created, if the ledger did not write genesis events).
    Returns init's info and how many events we authored."""
    info = json.loads(node.cli("init", "--non-interactive", "--json").stdout)
    kp = keys.load(Path(info["keys_dir"]))
    cid = info["community_id"]
    db = node.root / "data" / "hearthnet" / "communities" / cid / "events.sqlite"
    ours = stored_events(db, kp.node_id_full) or [
        signed_event(kp, cid, 1, "community.created", {"name": info["community_name"],
                                                       "founder_node_id": kp.node_id_full, "policy": {}})]
    h = max(e["lamport"] for e in ours)
    other = keys.generate()
    mine = signed_event(kp, cid, h + 2, "chat.message.sent", {"client_id": "y", "recipient": other.node_id_full,
                                                              "body": "hello", "attachments": []})
    theirs = signed_event(other, cid, h + 1, "chat.message.sent", {"client_id": "x", "recipient": kp.node_id_full,
                                                                   "body": "not yours", "attachments": []})
    fresh = [e for e in ours if e not in stored_events(db, kp.node_id_full)]
    write_events(db, fresh + [mine, theirs])
    return info, len(ours) + 1


def test_export_while_running_then_erase_stops_and_wipes(make_node, tmp_path: Path) -> None:
    node = make_node("alice")
    node.init()
    info, authored = seed_events(node)
    node.start()
    assert len(node.seen_pids) >= 4  # hearthnet run, supervisord, broker, gateway (+ llm)
    # the chat worker acknowledges the neighbour's message: one more event of ours
    db = node.root / "data" / "hearthnet" / "communities" / info["community_id"] / "events.sqlite"
    ours = lambda: [e["event_type"] for e in stored_events(db, info["node_id"])]  # noqa: E731
    wait_for(lambda: "chat.message.delivered" in ours(), 60, message="the delivered receipt")
    authored += 1

    out = tmp_path / "alice.zip"
    made = node.cli("export", "--out", str(out), "--json")
    assert made.returncode == 0, made.stderr
    doc = json.loads(made.stdout)
    assert doc["counts"] == {"events": authored, "chat": 2, "chat_history": 2, "market": 0, "files": 0, "blobs": 0}
    assert doc["node_id"] == info["node_id"]
    checked = node.cli("export", "--verify", str(out))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    token = node.token().encode()
    with zipfile.ZipFile(out) as zf:
        assert all(token not in zf.read(name) for name in zf.namelist())

    # an answer of no leaves the node running and everything in place
    declined = node.cli("erase", input="y\nn\n")
    assert declined.returncode == 2
    assert node.proc.poll() is None and node.api("/api/v1/status")["node"]["node_id"] == info["node_id"]

    erased = node.cli("erase", "--yes", "--json", timeout=60)
    assert erased.returncode == 0, erased.stderr
    report = json.loads(erased.stdout)
    assert report["stopped"]["running"] is True and report["stopped"]["signalled"] == "hearthnet run"
    assert report["stopped"]["killed"] == []  # `hearthnet run` stopped its own tree
    assert node.proc.wait(timeout=20) == 0
    assert node.leftovers() == []
    data = node.root / "data" / "hearthnet"
    assert not (data / "communities").exists() and not (data / "keys").exists()
    assert not (data / "tls").exists()  # server.key there is the device key (PKCS#8)
    assert not node.config_file.exists() and not node.log_dir.exists()
    assert not (node.run_dir / "api.token").exists()
    assert all(s["status"] in ("removed", "absent") for s in report["steps"])


def test_erase_keep_keys_on_a_running_node_then_init_and_run_again(make_node) -> None:
    node = make_node("bob")
    node.init()
    node_id = json.loads(node.cli("init", "--non-interactive", "--json").stdout)["node_id"]
    node.start()
    erased = node.cli("erase", "--yes", "--keep-keys", timeout=60)
    assert erased.returncode == 0, erased.stderr
    assert node.proc.wait(timeout=20) == 0 and node.leftovers() == []
    again = node.cli("init", "--non-interactive", "--json")
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["node_id"] == node_id
    node.start()
    assert node.api("/api/v1/status")["node"]["node_id"] == node_id
