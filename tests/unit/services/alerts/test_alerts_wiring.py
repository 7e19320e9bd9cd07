"""The alerts worker's wiring: `[alerts] enabled`, the program `hearthnet run` starts, the
CLI's bad input refused before any node is asked, and the SSE topics."""
from __future__ import annotations

import json

from click.testing import CliRunner

from hearthnet.cli import main
from hearthnet.config import load_config
from hearthnet.gateway import topics as T
from hearthnet.supervise import programs_for, render_supervisor_conf


def test_enabled_by_default_and_switched_off(tmp_path):
    path = tmp_path / "config.toml"
    path.write_text("")
    cfg = load_config(path, env={})
    assert cfg.alerts.enabled
    progs = programs_for(cfg, no_ui=True)
    assert any(p.name == "alerts" for p in progs)
    assert "-m workers.alerts" in render_supervisor_conf(cfg, progs, debug=False)
    off = load_config(path, env={"HEARTHNET_ALERTS_ENABLED": "false"})
    assert not any(p.name == "alerts" for p in programs_for(off, no_ui=True))


def test_cli_without_headline_is_bad_request_and_needs_no_node(tmp_path):
    for args in (["alert", "send", "--json"], ["alert", "send", "--headline", " ", "--json"]):
        res = CliRunner().invoke(main, args, env={"XDG_CONFIG_HOME": str(tmp_path)})
        assert res.exit_code == 2, res.output
        assert json.loads(res.output)["error"]["code"] == "bad_request"
    res = CliRunner().invoke(main, ["alert", "send", "--headline", "h", "--update", "a" * 8, "--cancel", "b" * 8,
                                    "--json"], env={"XDG_CONFIG_HOME": str(tmp_path)})
    assert res.exit_code == 2


def test_cli_send_input():
    from hearthnet.cli.commands.alert import send_input

    inp = send_input(headline="Boil water", status="Exercise", update="01ABCDEF", cancel=None, expires="2h",
                     area="Maple St", description=None)
    assert inp == {"headline": "Boil water", "status": "Exercise", "area": "Maple St", "msg_type": "Update",
                   "references": ["01ABCDEF"], "expires_in_seconds": 7200}


def test_alert_topics():
    got = T.parse_topics(["emergency.alert.issued", "emergency.alert.acknowledged"])
    assert T.event_types(got) == ["emergency.alert.acknowledged", "emergency.alert.issued"]
    assert T.match(got, {"event_type": "emergency.alert.acknowledged", "data": {}}) == "emergency.alert.acknowledged"
    assert T.match(got, {"event_type": "market.post.created", "data": {}}) is None
