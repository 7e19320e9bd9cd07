from __future__ import annotations

import json

from hearthnet.identity import keys
from tests.unit.cli.conftest import invoke


def test_invite_create_needs_a_community_then_a_running_node(runner, env):
    someone = keys.generate().node_id_full
    r = invoke(runner, "invite", "create", "--node-id", someone)
    assert r.exit_code == 1 and "no community yet" in r.stderr and "hint: run `hearthnet init`" in r.stderr
    assert invoke(runner, "init", "--non-interactive", "--name", "kitchen").exit_code == 0
    r = invoke(runner, "invite", "create", "--node-id", someone)
    assert r.exit_code == 3 and "hearthnet run" in r.stderr


def test_invite_create_usage(runner, env):
    assert invoke(runner, "invite", "create").exit_code == 2  # --node-id is required
    r = invoke(runner, "invite", "create", "--node-id", "x", "--level", "anchor")
    assert r.exit_code == 2
    r = invoke(runner, "invite", "create", "--node-id", "ed25519:ABCD-EFGH-IJKL-MNOP", "--json")
    assert r.exit_code == 2 and "hearthnet id" in json.loads(r.stdout)["error"]["message"]


def test_redeem_reports_a_broken_invite_before_a_missing_key(runner, env):
    r = invoke(runner, "invite", "redeem", "hearthnet://v1/garbage!", "--yes", "--json")
    assert r.exit_code == 4 and json.loads(r.stdout)["error"]["code"] == "invite_invalid"
    assert not env.data.exists()


def test_redeem_without_a_key_says_to_run_id(runner, env):
    from hearthnet.onboarding.invite import encode_invite, sign_invite

    alice = keys.generate()
    blob = sign_invite(alice, community_id=alice.node_id_full, community_name="Maple Street",
                       invitee_node_id=keys.generate().node_id_full, initial_level="member",
                       bootstrap_endpoints=[{"transport": "https", "host": "127.0.0.1", "port": 1}],
                       expires_at="2099-01-01T00:00:00Z")
    r = invoke(runner, "invite", "redeem", encode_invite(blob), "--yes")
    assert r.exit_code == 4 and "no key yet" in r.stderr and "hearthnet id" in r.stderr


def test_init_join_and_community_name_exclude_each_other(runner, env):
    r = invoke(runner, "init", "--join", "hearthnet://v1/x", "--community-name", "X")
    assert r.exit_code == 2 and not env.config_file.exists()
