"""hearthnet.systemd and `hearthnet service`: the rendered units pass `systemd-analyze
verify`; install/uninstall/status drive a fake `systemctl` on PATH whose command lines
are asserted (no systemd runs here: PID 1 is not systemd)."""
from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from hearthnet import systemd
from hearthnet.config import load_config
from tests.unit.xdg_fixture import isolated_xdg  # noqa: F401  (autouse)

SYSTEMD_ANALYZE = shutil.which("systemd-analyze")


def invoke(*args: str) -> tuple[int, str]:
    from hearthnet.cli import main

    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    return result.exit_code, result.output


def result_doc(out: str) -> dict:
    """A `--json` result without its envelope (checked here)."""
    doc = json.loads(out)
    assert doc.pop("ok") is True and doc.pop("schema_version") == 1, doc
    return doc


def fake_systemctl(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *, fail_with: str | None = None) -> Path:
    """A `systemctl` on PATH that appends its argv to a log and answers `show`."""
    bin_dir = tmp_path / "fakebin"
    bin_dir.mkdir()
    log = tmp_path / "systemctl.log"
    script = bin_dir / "systemctl"
    if fail_with:
        body = f'echo "$*" >> "{log}"\necho "{fail_with}" >&2\nexit 1\n'
    else:
        body = (f'echo "$*" >> "{log}"\n'
                'case "$*" in\n'
                '  *"show hearthnet.service"*)\n'
                '    printf "LoadState=loaded\\nActiveState=active\\nSubState=running\\n'
                'UnitFileState=enabled\\nMainPID=4242\\nNRestarts=2\\nResult=success\\n'
                'StatusText=running: 5 workers healthy\\n'
                'ExecMainStartTimestamp=Mon 2026-11-30 10:00:00 UTC\\n'
                'FragmentPath=/etc/systemd/system/hearthnet.service\\n";;\n'
                '  *"show --property=Version"*) echo "Version=252";;\n'
                'esac\nexit 0\n')
    script.write_text("#!/bin/sh\n" + body)
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    return log


def calls(log: Path) -> list[str]:
    return log.read_text().splitlines() if log.exists() else []


# ---- the unit ------------------------------------------------------------------------

def verify(unit_text: str, tmp_path: Path, *, user: bool) -> subprocess.CompletedProcess[str]:
    if SYSTEMD_ANALYZE is None:
        pytest.skip("systemd-analyze is not installed (Debian/Ubuntu: apt-get install systemd)")
    d = tmp_path / ("verify-user" if user else "verify-system")
    d.mkdir()
    (d / "hearthnet.service").write_text(unit_text)
    runtime = tmp_path / "xdg-runtime"  # a user manager needs one to resolve %t
    runtime.mkdir(mode=0o700, exist_ok=True)
    env = dict(os.environ, XDG_RUNTIME_DIR=str(runtime))
    argv = [SYSTEMD_ANALYZE, *(["--user"] if user else []), "verify", "./hearthnet.service"]
    return subprocess.run(argv, cwd=d, env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("scope", ["user", "system"])
def test_rendered_unit_passes_systemd_analyze_verify(scope: str, tmp_path: Path) -> None:
    plan = systemd.plan_user(load_config()) if scope == "user" else systemd.plan_system()
    assert Path(plan.exec_start[0]).is_absolute() and os.access(plan.exec_start[0], os.X_OK)
    proc = verify(plan.render(), tmp_path, user=scope == "user")
    # verify exits 0 even for unknown keys: its warnings name the file, so none may
    assert proc.returncode == 0, proc.stderr
    assert "hearthnet.service" not in proc.stderr, proc.stderr


def test_verify_catches_a_broken_unit(tmp_path: Path) -> None:
    """The check above has teeth: a missing ExecStart binary fails verify."""
    text = systemd.plan_system().render().replace(systemd.entry_point()[0], "/nonexistent/hearthnet", 1)
    assert verify(text, tmp_path, user=False).returncode != 0


def settings(text: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in text.splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, value = line.split("=", 1)
            out.setdefault(key, []).append(value)
    return out


def test_system_unit_settings() -> None:
    s = settings(systemd.plan_system().render())
    assert s["Type"] == ["notify"] and s["NotifyAccess"] == ["main"]
    assert s["ExecStart"][0].endswith("run --no-ui")
    assert s["User"] == ["hearthnet"] and s["Restart"] == ["on-failure"]
    for key in ("WatchdogSec", "RestartSec", "TimeoutStopSec"):
        assert int(s[key][0]) > 0
    for key in ("StateDirectory", "LogsDirectory", "CacheDirectory", "ConfigurationDirectory"):
        assert s[key] == ["hearthnet"]
    env = dict(v.strip('"').split("=", 1) for v in s["Environment"])
    assert env["HEARTHNET_RUN_DIR"] == "/run/hearthnet" and s["RuntimeDirectory"] == ["hearthnet"]
    assert env["XDG_DATA_HOME"] == "/var/lib" and env["XDG_STATE_HOME"] == "/var/log"
    for key in ("NoNewPrivileges", "PrivateTmp", "ProtectKernelTunables", "ProtectControlGroups",
                "RestrictSUIDSGID", "LockPersonality"):
        assert s[key] == ["yes"], key
    assert s["ProtectSystem"] == ["strict"]
    if "BindReadOnlyPaths" in s:  # an install in /home: read-only empty homes, the install bound in
        assert s["TemporaryFileSystem"] == ["/home:ro /root:ro /run/user:ro"] and "ProtectHome" not in s
    else:
        assert s["ProtectHome"] == ["yes"]
    assert "PrivateDevices" not in s  # the LLM may need a GPU


def test_system_unit_hides_homes_read_only_with_an_install_under_home() -> None:
    """Not ProtectHome=tmpfs: systemd before 257 mounts that tmpfs writable (mode 1777);
    read-only empty homes are TemporaryFileSystem=…:ro, the install bound in read-only."""
    import dataclasses

    plan = dataclasses.replace(systemd.plan_system(), bind_read_only=["/home/me/hn venv"])
    s = settings(plan.render())
    assert s["TemporaryFileSystem"] == ["/home:ro /root:ro /run/user:ro"] and "ProtectHome" not in s
    assert s["BindReadOnlyPaths"] == ['"/home/me/hn venv"']
    s = settings(dataclasses.replace(plan, bind_read_only=[]).render())
    assert s["ProtectHome"] == ["yes"] and "TemporaryFileSystem" not in s


def test_user_unit_keeps_the_nodes_dirs_writable_and_home_read_only() -> None:
    cfg = load_config()
    s = settings(systemd.plan_user(cfg).render())
    assert s["ProtectHome"] == ["read-only"] and s["ProtectSystem"] == ["strict"]
    assert s["PrivateUsers"] == ["yes"]  # else a user manager skips the mount sandbox
    writable = s["ReadWritePaths"][0].split()
    for p in (cfg.paths.data_dir, cfg.paths.log_dir, cfg.paths.cache_dir):
        assert str(p) in writable
    env = dict(v.strip('"').split("=", 1) for v in s["Environment"])
    assert env["HEARTHNET_RUN_DIR"].startswith("%t/hearthnet-")
    assert env["XDG_DATA_HOME"] == str(cfg.paths.data_dir.parent)
    assert "User" not in s and s["WantedBy"] == ["default.target"]


def test_no_sandbox_leaves_the_sandbox_out() -> None:
    s = settings(systemd.plan_system(sandbox=False).render())
    assert "ProtectSystem" not in s and "NoNewPrivileges" not in s
    assert s["Type"] == ["notify"]


def test_quoting_of_specifiers_and_blanks() -> None:
    plan = systemd.UnitPlan("system", ["/opt/my env/bin/hearthnet", "run", "100%"], {"A": "x%y"})
    text = plan.render()
    assert 'ExecStart="/opt/my env/bin/hearthnet" run 100%%' in text
    assert 'Environment="A=x%%y"' in text


# ---- the CLI -------------------------------------------------------------------------

def test_install_dry_run_json_prints_the_unit_and_writes_nothing(tmp_path: Path) -> None:
    code, out = invoke("service", "install", "--user", "--dry-run", "--json")
    assert code == 0, out
    doc = result_doc(out)
    assert set(doc) == {"scope", "unit_path", "unit", "dry_run", "written", "reloaded", "enabled",
                        "started", "initialised", "user", "user_created", "cli_prefix", "commands",
                        "next_steps"}
    assert doc["scope"] == "user" and doc["dry_run"] is True and doc["written"] is False
    assert doc["unit_path"] == str(tmp_path / "config" / "systemd" / "user" / "hearthnet.service")
    assert not Path(doc["unit_path"]).exists()
    assert "Type=notify" in doc["unit"] and doc["commands"] == []

    code, out = invoke("service", "install", "--system", "--dry-run", "--json")
    doc = result_doc(out)
    assert code == 0 and doc["unit_path"] == "/etc/systemd/system/hearthnet.service"
    assert doc["user"] == "hearthnet" and "User=hearthnet" in doc["unit"]
    assert "HEARTHNET_RUN_DIR=/run/hearthnet" in doc["cli_prefix"]


def test_install_user_with_a_fake_systemctl(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    log = fake_systemctl(tmp_path, monkeypatch)
    # not initialised yet: written and loaded, not enabled; the next step says `init`
    code, out = invoke("service", "install", "--user", "--json")
    assert code == 0, out
    doc = result_doc(out)
    assert doc["written"] and doc["reloaded"] and not doc["enabled"] and not doc["initialised"]
    assert any("init" in step for step in doc["next_steps"])
    assert calls(log) == ["--user show --property=Version", "--user daemon-reload"]
    unit = Path(doc["unit_path"])
    assert unit.read_text() == doc["unit"]
    assert stat.S_IMODE(unit.stat().st_mode) == 0o644

    # an initialised node is enabled and started
    import hearthnet.cli.commands.service as service_cmd

    monkeypatch.setattr(service_cmd, "_initialised", lambda cfg: True)
    log.unlink()
    code, out = invoke("service", "install", "--user", "--json")
    doc = result_doc(out)
    assert code == 0 and doc["enabled"] and doc["started"]
    assert calls(log) == ["--user show --property=Version", "--user daemon-reload",
                          "--user enable --now hearthnet.service"]
    assert doc["commands"] == [["systemctl", "--user", "daemon-reload"],
                               ["systemctl", "--user", "enable", "--now", "hearthnet.service"]]


def test_uninstall_user_with_a_fake_systemctl(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    log = fake_systemctl(tmp_path, monkeypatch)
    unit = tmp_path / "config" / "systemd" / "user" / "hearthnet.service"
    unit.parent.mkdir(parents=True)
    unit.write_text("[Service]\n")
    data = tmp_path / "data" / "hearthnet"
    data.mkdir(parents=True)
    code, out = invoke("service", "uninstall", "--user", "--json")
    assert code == 0, out
    doc = result_doc(out)
    assert set(doc) == {"scope", "unit_path", "removed", "commands", "data_kept"}
    assert doc["removed"] is True and not unit.exists()
    assert str(data) in doc["data_kept"] and data.exists()
    assert calls(log) == ["--user show --property=Version", "--user disable --now hearthnet.service",
                          "--user daemon-reload", "--user reset-failed hearthnet.service"]
    # again: nothing installed, nothing done, still exit 0
    log.unlink()
    code, out = invoke("service", "uninstall", "--user", "--json")
    assert code == 0 and json.loads(out)["removed"] is False
    assert calls(log) == ["--user show --property=Version"]


def test_status_parses_systemctl_show(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    log = fake_systemctl(tmp_path, monkeypatch)
    code, out = invoke("service", "status", "--system", "--json")
    assert code == 0, out
    doc = result_doc(out)
    assert set(doc) == {"scope", "unit", "unit_path", "installed", "load_state", "active_state",
                        "sub_state", "unit_file_state", "main_pid", "n_restarts", "result",
                        "status_text", "since", "cli_prefix"}
    assert doc["installed"] is True and doc["active_state"] == "active" and doc["sub_state"] == "running"
    assert doc["main_pid"] == 4242 and doc["n_restarts"] == 2
    assert doc["status_text"] == "running: 5 workers healthy"
    assert calls(log) == ["show hearthnet.service --property=" + ",".join(systemd.SHOW_PROPERTIES)]
    code, out = invoke("service", "status", "--system")
    assert code == 0 and "active (running)" in out and "4242" in out


@pytest.mark.parametrize("args", [("install", "--user"), ("uninstall", "--user"), ("status", "--system")])
def test_no_systemd_running_is_a_plain_error(args: tuple[str, ...], tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    fake_systemctl(tmp_path, monkeypatch, fail_with="System has not been booted with systemd as init "
                                                    "system (PID 1). Can't operate.")
    code, out = invoke("service", *args, "--json")
    assert code == 1
    doc = json.loads(out)
    assert doc["ok"] is False and doc["error"]["code"] == "systemd_unavailable" and "Traceback" not in out
    assert not (tmp_path / "config" / "systemd").exists()  # nothing written


def test_no_systemctl_at_all(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    code, out = invoke("service", "status", "--user")
    assert code == 1 and "systemctl is not installed" in out and "Traceback" not in out


def test_install_no_enable_without_systemd_still_writes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """For images built without a running systemd: the unit is written, nothing loaded."""
    log = fake_systemctl(tmp_path, monkeypatch, fail_with="Failed to connect to bus: Host is down")
    code, out = invoke("service", "install", "--user", "--no-enable", "--json")
    assert code == 0, out
    doc = result_doc(out)
    assert doc["written"] and not doc["reloaded"] and not doc["enabled"]
    assert calls(log) == ["--user show --property=Version"]


def test_user_and_system_together_is_a_usage_error() -> None:
    code, out = invoke("service", "status", "--user", "--system")
    assert code == 2 and "choose one" in out


def test_cli_finds_a_user_service_run_dir_in_xdg_runtime_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The --user unit sets HEARTHNET_RUN_DIR=%t/<name>; the owner's shell has no such
    variable, so the run dir is looked up in $XDG_RUNTIME_DIR while that node runs."""
    from hearthnet.paths import default_paths, run_dir_name

    monkeypatch.delenv("HEARTHNET_RUN_DIR")
    runtime = tmp_path / "xdg-runtime"
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))
    data = default_paths().data_dir
    assert default_paths().run_dir == Path("/tmp") / run_dir_name(data)  # no service node
    service_dir = runtime / run_dir_name(data)
    service_dir.mkdir(parents=True)
    (service_dir / "api.json").write_text("{}")
    assert default_paths().run_dir == service_dir
    env = dict(v.strip('"').split("=", 1) for v in settings(systemd.plan_user(load_config()).render())["Environment"])
    assert env["HEARTHNET_RUN_DIR"] == f"%t/{service_dir.name}"


def test_install_system_creates_dirs_writes_and_reloads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """--system with root, against a fake systemctl; the service user is one that exists
    (root) and the directories are under tmp, so nothing of the machine is touched."""
    if os.geteuid() != 0:
        pytest.skip("the --system install path needs root")
    log = fake_systemctl(tmp_path, monkeypatch)
    dirs = {key: str(tmp_path / "sys" / key) for key in systemd.SYSTEM_DIRS}
    monkeypatch.setattr(systemd, "SYSTEM_DIRS", dirs)
    monkeypatch.setattr(systemd, "SYSTEM_UNIT_DIR", tmp_path / "etc-systemd")
    monkeypatch.setattr(systemd, "SERVICE_USER", "root")
    report = systemd.install(systemd.plan_system(), dry_run=False, enable=True, initialised=False)
    assert report.written and report.reloaded and not report.enabled and not report.user_created
    assert (tmp_path / "etc-systemd" / "hearthnet.service").read_text() == report.unit
    for d in dirs.values():
        assert stat.S_IMODE(Path(d).stat().st_mode) == 0o700
    assert calls(log) == ["show --property=Version", "daemon-reload"]
    assert any("init" in step for step in report.next_steps)
    assert any("sudo systemctl enable --now hearthnet.service" in step for step in report.next_steps)


def test_service_user_is_created_with_useradd_when_missing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bin_dir = tmp_path / "fakebin"
    bin_dir.mkdir()
    log = tmp_path / "useradd.log"
    (bin_dir / "useradd").write_text(f'#!/bin/sh\necho "$*" >> "{log}"\n')
    (bin_dir / "useradd").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    monkeypatch.setattr(systemd, "SERVICE_USER", "hn-test-no-such-user")
    assert systemd.ensure_service_user() is True
    argv = log.read_text().split()
    assert argv[:2] == ["--system", "--user-group"] and argv[-1] == "hn-test-no-such-user"
    assert argv[argv.index("--home-dir") + 1] == "/var/lib/hearthnet"
    monkeypatch.setattr(systemd, "SERVICE_USER", "root")
    assert systemd.ensure_service_user() is False  # exists: nothing run
    assert len(log.read_text().splitlines()) == 1


def test_a_named_config_file_is_pinned_in_the_user_unit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg_file = tmp_path / "elsewhere" / "node.toml"
    monkeypatch.setenv("HEARTHNET_CONFIG", str(cfg_file))
    code, out = invoke("service", "install", "--user", "--dry-run", "--json")
    assert code == 0, out
    assert f'Environment="HEARTHNET_CONFIG={cfg_file}"' in json.loads(out)["unit"]
    monkeypatch.delenv("HEARTHNET_CONFIG")
    code, out = invoke("service", "install", "--user", "--dry-run", "--json")
    assert "HEARTHNET_CONFIG" not in json.loads(out)["unit"]
