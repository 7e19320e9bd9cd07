"""What a new user sees first, through a real node: `hearthnet run` says where its local
API (the run dir's unix socket) and its peer API (the TCP port other nodes use) are, and
`invite create` writes its QR code into the node's state dir, not into the directory the
user happens to stand in."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from hearthnet.identity import keys
from hearthnet.identity.keys import short_node_id

pytestmark = pytest.mark.integration
CORE = ("broker", "gateway", "ledger", "governance")


def test_run_names_its_endpoints_and_invites_stay_out_of_the_cwd(make_node, tmp_path: Path) -> None:
    node = make_node("alice")
    node.init()
    node.cwd = tmp_path / "where-the-user-stands"
    node.cwd.mkdir()
    node.start(wait_workers=CORE)

    invitee = keys.generate().node_id_full
    r = node.cli("invite", "create", "--node-id", invitee, "--json")
    assert r.returncode == 0, r.stderr + r.stdout
    doc = json.loads(r.stdout)
    assert doc["ok"] is True and doc["schema_version"] == 1
    png = Path(doc["png"])
    invites = node.root / "data" / "hearthnet" / "communities" / doc["community_id"] / "invites"
    assert png == invites / (short_node_id(invitee).removeprefix("ed25519:")[:9] + ".png")
    assert (invites.stat().st_mode & 0o777, png.stat().st_mode & 0o777) == (0o700, 0o600)
    # the human form says where it went; nothing lands in the current directory
    human = node.cli("invite", "create", "--node-id", invitee)
    assert human.returncode == 0, human.stderr
    assert f"QR code saved to {png}" in human.stdout
    assert list(node.cwd.iterdir()) == []

    node.stop()
    said = node.proc_output()
    assert "node ready" in said, said
    assert f"local API: {node.api_socket} (unix socket" in said, said
    assert f"peer API:  127.0.0.1:{node.port} (HTTPS, for other nodes" in said, said
    assert f"https://127.0.0.1:{node.port}" not in said  # the old, wrong "local API" URL
