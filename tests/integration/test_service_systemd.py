"""`hearthnet service install` under a REAL systemd: PID 1 of a throw-away container
(systemd-nspawn, hearthnet/testing/systemd_container.py) with a private network.

Inside it, the real CLI runs systemctl, and systemd itself shows: the unit goes from start
to running on the node's READY=1 (Type=notify), a SIGKILLed main process is restarted
(Restart=on-failure), a stalled watchdog gets the node stopped and restarted, the node runs
as the system user `hearthnet` in its sandbox (ProtectSystem=strict: nothing writable but
its own dirs; private /tmp; /root hidden; logs 0600), and `service uninstall` stops and
removes it. One test in stages: each stage needs the one before, and a boot costs time.
Then `--user`: a user's node under that user's own systemd manager, sandboxed too.
"""
from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from hearthnet import systemd
from hearthnet.testing.systemd_container import SystemdContainer, unavailable_reason
from hearthnet.testing.waiting import wait_for

pytestmark = pytest.mark.integration

UNIT = systemd.UNIT_NAME
HN = systemd.entry_point()  # the same path inside: the install is mounted where it is here
# how the owner runs the CLI against the system node (cli_prefix, with runuser: no sudo here)
AS_SERVICE_USER = ["runuser", "-u", systemd.SERVICE_USER, "--", "env",
                   *(f"{k}={v}" for k, v in systemd.SYSTEM_XDG.items()),
                   f"HEARTHNET_RUN_DIR={systemd.SYSTEM_RUN_DIR}", *HN]
# A drop-in (what `systemctl edit hearthnet` writes) shortens only the watchdog, so its
# stage waits 10 s instead of the unit's 30; `run` pings at whatever WATCHDOG_USEC says.
TEST_WATCHDOG_SECONDS = 10
RESTART_TIMEOUT = systemd.RESTART_SECONDS + 90
SHOW = ("ActiveState", "SubState", "MainPID", "NRestarts", "StatusText", "UnitFileState", "LoadState")


@pytest.fixture
def box(tmp_path: Path) -> Iterator[SystemdContainer]:
    if (reason := unavailable_reason()):
        pytest.skip(reason)
    container = SystemdContainer(tmp_path / "box")
    container.start()
    try:
        yield container
    finally:
        container.stop()  # raises if any mount of it were left
        assert container.mounts_left() == []


def hn_json(box: SystemdContainer, *args: str, as_service_user: bool = False) -> dict:
    argv = [*(AS_SERVICE_USER if as_service_user else HN), *args, "--json"]
    r = box.run(*argv)
    assert r.returncode == 0, f"hearthnet {' '.join(args)}: exit {r.returncode}\n{r.stderr}{r.stdout}"
    return json.loads(r.stdout)


def show(box: SystemdContainer) -> dict[str, str]:
    return box.show(UNIT, *SHOW)


def journal_tail(box: SystemdContainer) -> str:
    return "\n".join(box.journal(UNIT)[-60:])


def service_uid(box: SystemdContainer) -> int:
    return int(box.run("id", "-u", systemd.SERVICE_USER, check=True).stdout)


def service_gid(box: SystemdContainer) -> int:
    return int(box.run("id", "-g", systemd.SERVICE_USER, check=True).stdout)


def unit_processes(box: SystemdContainer) -> list[tuple[int, int, str]]:
    """(pid, uid, command line) of every process running this install's interpreter."""
    out = box.run("ps", "-e", "-o", "pid=,uid=,args=", check=True).stdout
    rows = [line.split(None, 2) for line in out.splitlines()]
    return [(int(p), int(u), a) for p, u, a in rows if HN[0].rsplit("/bin/", 1)[0] in a]


def in_unit_namespace(box: SystemdContainer, pid: str, script: str, ids: tuple[int, int] | None) -> str:
    """`script` in the mount namespace of the unit's process `pid`, as root or as `ids`
    (uid, gid); its output and errors."""
    who = ["--setuid", str(ids[0]), "--setgid", str(ids[1])] if ids else []
    r = box.run("nsenter", f"--target={pid}", "--mount", *who, "--", "sh", "-c", script)
    return r.stdout + r.stderr


def proc_status(box: SystemdContainer, pid: int) -> dict[str, str]:
    text = box.run("cat", f"/proc/{pid}/status", check=True).stdout
    return {k: v.strip() for k, _, v in (line.partition(":") for line in text.splitlines())}


def restarted(box: SystemdContainer, old_pid: str, n: int) -> dict[str, str]:
    """Wait until systemd restarted the node for the n-th time and it is running again."""
    def again() -> dict[str, str] | None:
        s = show(box)
        ok = s["NRestarts"] == str(n) and s["ActiveState"] == "active" and s["SubState"] == "running"
        return s if ok and s["MainPID"] not in ("0", old_pid) else None
    return wait_for(again, RESTART_TIMEOUT, interval=0.5,
                    message=lambda: f"restart #{n} of {UNIT}; journal:\n{journal_tail(box)}")


def test_system_anchor_under_real_systemd(box: SystemdContainer) -> None:
    # PID 1's own log says when it got each notification and changed state
    box.run("systemctl", "log-level", "debug", check=True)
    installed_before_init(box)
    box.run(*AS_SERVICE_USER, "init", "--non-interactive", "--name", "anchor", check=True)
    box.run("sh", "-c", f"mkdir -p /etc/systemd/system/{UNIT}.d && printf '[Service]\\nWatchdogSec={TEST_WATCHDOG_SECONDS}\\n' "
                        f"> /etc/systemd/system/{UNIT}.d/test-watchdog.conf", check=True)
    main_pid = enabled_and_ready(box)
    sandboxed(box, main_pid)
    main_pid = sigkill_restarts(box, main_pid)
    stalled_watchdog_restarts(box, main_pid)
    uninstalled(box)


def installed_before_init(box: SystemdContainer) -> None:
    """Not initialised yet: the user, its dirs and the unit are made and systemd reloaded,
    but nothing is started."""
    assert hn_json(box, "service", "status", "--system")["installed"] is False
    doc = hn_json(box, "service", "install", "--system")
    assert doc["user_created"] is True and doc["written"] is True and doc["reloaded"] is True
    assert doc["initialised"] is False and doc["enabled"] is False and doc["started"] is False
    assert any("init" in step for step in doc["next_steps"]), doc["next_steps"]
    s = show(box)
    assert s["LoadState"] == "loaded" and s["ActiveState"] == "inactive", s
    listing = box.run("stat", "-c", "%a %U", *systemd.SYSTEM_DIRS.values(), check=True).stdout.split("\n")
    assert [line for line in listing if line] == ["700 hearthnet"] * len(systemd.SYSTEM_DIRS), listing


def enabled_and_ready(box: SystemdContainer) -> str:
    """`install` again: enable --now returns once systemd has the node's READY=1, and the
    unit went from start to running exactly then, not when the process was forked."""
    doc = hn_json(box, "service", "install", "--system")
    assert doc["user_created"] is False and doc["enabled"] is True and doc["started"] is True, doc
    assert doc["commands"][-1] == ["systemctl", "enable", "--now", UNIT]

    lines = box.journal(UNIT)
    def at(pattern: str) -> int:
        found = [i for i, line in enumerate(lines) if re.search(pattern, line)]
        assert found, f"no /{pattern}/ in the journal:\n" + "\n".join(lines[-60:])
        return found[0]
    forked, ready = at(r"Changed dead -> start"), at(r"Got notification message .*READY=1")
    running, started = at(r"Changed start -> running"), at(r"Started hearthnet\.service")
    assert forked < ready < running < started
    notes = [line for line in lines[forked:ready] if "Got notification message" in line]
    assert notes and all("STATUS=starting" in line for line in notes), notes  # systemd saw "starting" first
    assert re.search(r"READY=1, STATUS=running: \d+ workers healthy", lines[ready]), lines[ready]

    s = show(box)
    assert (s["ActiveState"], s["SubState"], s["UnitFileState"]) == ("active", "running", "enabled"), s
    # the node itself answers, to its owner, on the system run dir
    status = hn_json(box, "status", as_service_user=True)
    workers = status["workers"]
    assert workers and all(w["healthy"] for w in workers), workers
    assert s["StatusText"] == f"running: {len(workers)} workers healthy"
    # and `service status` reports what systemd knows
    doc = hn_json(box, "service", "status", "--system")
    assert doc["installed"] is True and doc["unit_path"] == f"/etc/systemd/system/{UNIT}"
    assert (doc["active_state"], doc["sub_state"], doc["unit_file_state"]) == ("active", "running", "enabled")
    assert doc["main_pid"] == int(s["MainPID"]) and doc["n_restarts"] == 0
    assert doc["status_text"] == s["StatusText"]
    assert doc["cli_prefix"].startswith(f"sudo -u {systemd.SERVICE_USER} env ")
    return s["MainPID"]


def sandboxed(box: SystemdContainer, main_pid: str) -> None:
    """Runs as `hearthnet` without privileges; in its mount namespace the system is
    read-only but for its own dirs, /tmp is its own and /root shows only the install."""
    uid = service_uid(box)
    procs = unit_processes(box)
    assert len(procs) >= 5 and all(u == uid for _, u, _ in procs), procs
    st = proc_status(box, int(main_pid))
    assert st["Uid"].split() == [str(uid)] * 4 and st["NoNewPrivs"] == "1", st
    assert st["CapEff"] == "0000000000000000", st

    box.run("sh", "-c", "echo outside > /tmp/hn-outside && echo secret > /root/hn-secret", check=True)

    def inside(script: str, *, as_service: bool) -> str:
        ids = (uid, service_gid(box)) if as_service else None
        return in_unit_namespace(box, main_pid, script, ids)

    # even root in the unit's namespace: everything outside the node's dirs is read-only
    # (/root too: the install's interpreter is bound into a read-only empty /root)
    for path in ("/etc/hn-probe", "/var/lib/hn-probe", "/usr/local/hn-probe", "/var/hn-probe",
                 "/root/hn-probe", "/home/hn-probe"):
        out = inside(f"touch {path} && echo WROTE", as_service=False)
        assert "Read-only file system" in out and "WROTE" not in out, (path, out)
    for path in ("/var/lib/hearthnet/probe", "/var/log/hearthnet/probe", "/var/cache/hearthnet/probe",
                 "/tmp/probe"):
        out = inside(f"touch {path} && echo WROTE && rm {path}", as_service=True)
        assert "WROTE" in out, (path, out)
    assert "No such file" in inside("cat /tmp/hn-outside", as_service=False)        # PrivateTmp
    assert "No such file" in inside("cat /root/hn-secret", as_service=False)        # homes hidden

    # logs: files 0600, dirs 0700, all the service user's
    rows = box.run("find", "/var/log/hearthnet", "-printf", "%y %m %U %p\n", check=True).stdout.splitlines()
    names = {row.rsplit("/", 1)[-1] for row in rows}
    assert {"supervisord.log", "gateway.log", "broker.log"} <= names, rows
    for row in rows:
        kind, mode, owner, path = row.split(" ", 3)
        assert owner == str(uid) and mode == ("700" if kind == "d" else "600"), row
    modes = box.run("stat", "-c", "%a %U %n", "/var/lib/hearthnet", "/etc/hearthnet/config.toml",
                    systemd.SYSTEM_RUN_DIR, check=True).stdout.splitlines()
    assert all(m.split()[0] in ("700", "600") and m.split()[1] == "hearthnet" for m in modes), modes


def sigkill_restarts(box: SystemdContainer, main_pid: str) -> str:
    """SIGKILL of `hearthnet run`: systemd kills what is left of the tree and starts the
    node again, which comes up healthy on the state the killed one left."""
    old = {pid for pid, _, _ in unit_processes(box)}
    box.run("kill", "-KILL", main_pid, check=True)
    s = restarted(box, main_pid, 1)
    assert not old & {pid for pid, _, _ in unit_processes(box)}, "a process of the killed tree survived"
    lines = "\n".join(box.journal(UNIT))
    assert "Main process exited, code=killed, status=9/KILL" in lines
    assert "Scheduled restart job, restart counter is at 1" in lines
    workers = hn_json(box, "status", as_service_user=True)["workers"]
    assert all(w["healthy"] for w in workers), workers
    return s["MainPID"]


def stalled_watchdog_restarts(box: SystemdContainer, main_pid: str) -> None:
    """A main process that stops pinging (SIGSTOP: frozen, its tree still up) is stopped
    by systemd's watchdog (SIGTERM + SIGCONT: `run` then stops in order) and restarted."""
    box.run("kill", "-STOP", main_pid, check=True)
    s = restarted(box, main_pid, 2)
    lines = "\n".join(box.journal(UNIT))
    assert f"Watchdog timeout (limit {TEST_WATCHDOG_SECONDS}s)!" in lines, journal_tail(box)
    assert "Failed with result 'watchdog'" in lines, journal_tail(box)
    doc = hn_json(box, "service", "status", "--system")
    assert doc["n_restarts"] == 2 and doc["main_pid"] == int(s["MainPID"]), doc


def uninstalled(box: SystemdContainer) -> None:
    """`service uninstall`: stopped, disabled, unit gone, systemd forgot it; data stays."""
    box.run("rm", "-r", f"/etc/systemd/system/{UNIT}.d", check=True)
    doc = hn_json(box, "service", "uninstall", "--system")
    assert doc["removed"] is True and ["systemctl", "disable", "--now", UNIT] in doc["commands"], doc
    assert unit_processes(box) == []
    assert box.run("ps", "-u", systemd.SERVICE_USER, "-o", "pid=").stdout.strip() == ""
    assert box.run("test", "-e", f"/etc/systemd/system/{UNIT}").returncode == 1
    assert box.run("test", "-e", systemd.SYSTEM_RUN_DIR).returncode == 1  # RuntimeDirectory= removed
    assert box.run("test", "-s", "/var/lib/hearthnet/keys/device.ed25519").returncode == 0
    s = show(box)
    assert s["LoadState"] == "not-found" and s["ActiveState"] == "inactive", s
    assert hn_json(box, "service", "status", "--system")["installed"] is False


# ---- --user: a user's own node under the user's systemd manager -------------------------

USER = "alice"


def test_user_node_under_a_real_user_manager(box: SystemdContainer) -> None:
    """`service install --user` as a lingering user: the user manager starts the node
    (READY), its CLI finds it, and its sandbox holds: home and its config read-only, only
    the node's data, log and cache dirs writable, /etc read-only, /tmp its own."""
    box.run("useradd", "--create-home", USER, check=True)
    box.run("loginctl", "enable-linger", USER, check=True)  # the user manager runs without a login
    uid = int(box.run("id", "-u", USER, check=True).stdout)
    wait_for(lambda: box.run("systemctl", "is-active", f"user@{uid}.service").stdout.strip() == "active",
             60, interval=0.2, message=f"user@{uid}.service active")
    env = {"HOME": f"/home/{USER}", "USER": USER, "XDG_RUNTIME_DIR": f"/run/user/{uid}"}

    def as_user(*argv: str) -> dict:
        r = box.run(*argv, user=USER, env=env)
        assert r.returncode == 0, f"{' '.join(argv)}: exit {r.returncode}\n{r.stderr}{r.stdout}"
        return json.loads(r.stdout) if "--json" in argv else {}

    as_user(*HN, "init", "--non-interactive", "--name", USER)
    doc = as_user(*HN, "service", "install", "--user", "--json")
    assert doc["unit_path"] == f"/home/{USER}/.config/systemd/user/{UNIT}"
    assert doc["enabled"] is True and doc["started"] is True, doc
    out = box.run("systemctl", "--user", "show", UNIT, "--property=" + ",".join(SHOW), user=USER, env=env,
                  check=True).stdout
    s = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
    assert (s["ActiveState"], s["SubState"]) == ("active", "running"), s
    workers = as_user(*HN, "status", "--json")["workers"]  # its run dir in $XDG_RUNTIME_DIR
    assert workers and all(w["healthy"] for w in workers), workers
    assert s["StatusText"] == f"running: {len(workers)} workers healthy"
    st = as_user(*HN, "service", "status", "--user", "--json")
    assert (st["scope"], st["active_state"], st["main_pid"]) == ("user", "active", int(s["MainPID"])), st

    pid = s["MainPID"]
    status = proc_status(box, int(pid))
    assert status["Uid"].split() == [str(uid)] * 4 and status["NoNewPrivs"] == "1", status
    home = f"/home/{USER}"
    for path in (f"{home}/probe", f"{home}/.config/hearthnet/probe", "/etc/probe", "/var/probe"):
        out = in_unit_namespace(box, pid, f"touch {path} && echo WROTE", (uid, uid))
        assert "Read-only file system" in out and "WROTE" not in out, (path, out)
    for d in (".local/share/hearthnet", ".local/state/hearthnet/log", ".cache/hearthnet"):
        out = in_unit_namespace(box, pid, f"touch {home}/{d}/probe && echo WROTE && rm {home}/{d}/probe", (uid, uid))
        assert "WROTE" in out, (d, out)
    box.run("sh", "-c", "echo outside > /tmp/hn-outside", check=True)
    assert "No such file" in in_unit_namespace(box, pid, "cat /tmp/hn-outside", (uid, uid))
    rows = box.run("find", f"{home}/.local/state/hearthnet/log", "-printf", "%y %m %p\n",
                   check=True).stdout.splitlines()
    assert any(r.endswith("/gateway.log") for r in rows), rows
    assert all(r.split()[1] == ("700" if r[0] == "d" else "600") for r in rows), rows

    doc = as_user(*HN, "service", "uninstall", "--user", "--json")
    assert doc["removed"] is True, doc
    assert unit_processes(box) == []
    out = box.run("systemctl", "--user", "show", UNIT, "--property=LoadState", user=USER, env=env).stdout
    assert out.strip() == "LoadState=not-found"
