from __future__ import annotations

from tests.unit.cli.conftest import invoke


def test_run_uninitialised_exits_1_with_init_command(runner, env):
    result = invoke(runner, "run", "--no-ui")
    assert result.exit_code == 1
    assert "hearthnet init" in result.stderr and "Traceback" not in result.output


def test_run_passes_options_and_exit_code(runner, env, monkeypatch, tmp_path):
    import hearthnet.supervise as supervise

    calls = []

    def fake_run_node(cfg, *, no_ui, debug, config_flag=None, on_event=None):
        calls.append((cfg.source, no_ui, debug, config_flag))
        on_event("starting", {"pid": 99})
        on_event("ready", {"socket": "/tmp/hn-x/api.sock", "peer_host": "0.0.0.0", "peer_port": 7080,
                           "ui": "http://127.0.0.1:7860"})
        on_event("stopping", {})
        return 7

    monkeypatch.setattr(supervise, "run_node", fake_run_node)
    cfg_file = tmp_path / "node.toml"
    result = invoke(runner, "run", "--config", str(cfg_file), "--no-ui", "--debug")
    assert result.exit_code == 7
    assert calls == [(cfg_file, True, True, cfg_file)]
    assert "supervisord pid 99" in result.stderr and "node ready" in result.stderr
    assert "local API: /tmp/hn-x/api.sock (unix socket" in result.stderr
    assert "peer API:  port 7080 on every interface (HTTPS, for other nodes" in result.stderr
    assert "UI:        http://127.0.0.1:7860" in result.stderr and "https://127.0.0.1:7080" not in result.stderr
    # the group's --config is used when run has none
    result = invoke(runner, "--config", str(cfg_file), "run")
    assert calls[-1] == (cfg_file, False, False, cfg_file)


def test_run_ctrl_c_is_a_clean_stop(runner, env, monkeypatch):
    import hearthnet.supervise as supervise

    def interrupted(cfg, **kw):
        raise KeyboardInterrupt

    monkeypatch.setattr(supervise, "run_node", interrupted)
    assert invoke(runner, "run").exit_code == 0


def test_ready_names_a_bound_peer_address_and_no_ui():
    from hearthnet.cli.commands.run import ready_text

    text = ready_text({"socket": "/run/x/api.sock", "peer_host": "10.0.0.5", "peer_port": 7443, "ui": None}, "Ctrl-C")
    assert "peer API:  10.0.0.5:7443 (HTTPS" in text and "local API: /run/x/api.sock" in text
    assert "UI" not in text
