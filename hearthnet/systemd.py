"""`hearthnet service`: run the node as a systemd service (the design card's
"systemd-managed anchors").

The unit is Type=notify: `hearthnet run` is the main process, supervises supervisord and
sends READY=1 once every worker is healthy, STATUS= lines, WATCHDOG=1 while its local API
and broker answer, STOPPING=1 on the way down (hearthnet/supervise.py, sdnotify.py). So
only the main process notifies: NotifyAccess=main.

Two scopes:
- user:   ~/.config/systemd/user/hearthnet.service, the node of the installing user, its
          XDG dirs pinned as they resolve now, the run dir in $XDG_RUNTIME_DIR (%t).
- system: /etc/systemd/system/hearthnet.service, a dedicated system user `hearthnet`,
          XDG dirs /var/lib, /etc, /var/log, /var/cache (StateDirectory= & co.), run dir
          /run/hearthnet.
Everything that talks to systemd goes through `systemctl`; no systemd → SystemdUnavailable.
"""
from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from hearthnet.errors import HearthNetError

if TYPE_CHECKING:
    from hearthnet.config import Config

Scope = Literal["user", "system"]

UNIT_NAME = "hearthnet.service"
SERVICE_USER = "hearthnet"
SYSTEM_UNIT_DIR = Path("/etc/systemd/system")
SYSTEM_RUN_DIR = "/run/hearthnet"
# The system node's XDG bases: platformdirs appends "hearthnet", which gives exactly the
# directories systemd's StateDirectory=/ConfigurationDirectory=/LogsDirectory=/
# CacheDirectory=hearthnet create (the log dir is /var/log/hearthnet/log).
SYSTEM_XDG = {"XDG_DATA_HOME": "/var/lib", "XDG_CONFIG_HOME": "/etc",
              "XDG_STATE_HOME": "/var/log", "XDG_CACHE_HOME": "/var/cache"}
SYSTEM_DIRS = {"StateDirectory": "/var/lib/hearthnet", "LogsDirectory": "/var/log/hearthnet",
               "CacheDirectory": "/var/cache/hearthnet", "ConfigurationDirectory": "/etc/hearthnet"}
HOME_ROOTS = (Path("/home"), Path("/root"), Path("/run/user"))

WATCHDOG_SECONDS = 30
RESTART_SECONDS = 5
START_TIMEOUT_SECONDS = 180  # READY waits for every worker; an LLM may load a large model
STOP_TIMEOUT_SECONDS = 20    # `run` stops its tree within ~10 s (supervise.STOP_BUDGET_SECONDS)
SHOW_PROPERTIES = ("LoadState", "ActiveState", "SubState", "UnitFileState", "MainPID",
                   "NRestarts", "Result", "StatusText", "ExecMainStartTimestamp", "FragmentPath")
# systemctl's words for "there is no service manager to talk to"
_NO_MANAGER = ("not been booted with systemd", "Failed to connect to bus",
               "Failed to connect to user scope bus", "Host is down")


class SystemdUnavailable(HearthNetError):
    """No systemctl, or no systemd service manager running to talk to."""

    code = "systemd_unavailable"


# ---- what goes into the unit ---------------------------------------------------------

def default_scope() -> Scope:
    return "system" if os.geteuid() == 0 else "user"


def entry_point() -> list[str]:
    """The command that runs this very install: the console script beside our interpreter
    (a venv's bin/hearthnet), else `<python> -m hearthnet`. Absolute, never resolved
    through symlinks (a venv's python is a link to the base interpreter)."""
    python = Path(sys.executable).absolute()
    script = python.parent / "hearthnet"
    if script.is_file() and os.access(script, os.X_OK):
        return [str(script)]
    return [str(python), "-m", "hearthnet"]


def install_roots() -> list[Path]:
    """Directories the service must read to run this install: the venv, the base
    interpreter's prefix, and the source tree of an editable install."""
    import hearthnet

    roots = {Path(sys.prefix), Path(sys.base_prefix), Path(hearthnet.__file__).resolve().parent.parent}
    return _outermost(roots)


def _outermost(paths: set[Path] | list[Path]) -> list[Path]:
    """Drop every path that lies inside another one of the set."""
    out: list[Path] = []
    for p in sorted({Path(os.path.abspath(q)) for q in paths}, key=lambda q: len(q.parts)):
        if not any(p == o or o in p.parents for o in out):
            out.append(p)
    return out


def _under_home(path: Path) -> bool:
    return any(path == root or root in path.parents for root in HOME_ROOTS)


def user_unit_dir(env: dict[str, str] | None = None) -> Path:
    env = dict(os.environ) if env is None else env
    base = Path(env["XDG_CONFIG_HOME"]) if env.get("XDG_CONFIG_HOME") else Path.home() / ".config"
    return base / "systemd" / "user"


def unit_path(scope: Scope) -> Path:
    return (SYSTEM_UNIT_DIR if scope == "system" else user_unit_dir()) / UNIT_NAME


@dataclass(frozen=True)
class UnitPlan:
    scope: Scope
    exec_start: list[str]
    environment: dict[str, str]
    sandbox: bool = True
    read_write_paths: list[str] = field(default_factory=list)  # user scope: the node's dirs
    bind_read_only: list[str] = field(default_factory=list)    # system scope: an install under /home
    runtime_dir: str = "hearthnet"                            # RuntimeDirectory= (relative)

    @property
    def path(self) -> Path:
        return unit_path(self.scope)

    def render(self) -> str:
        return render_unit(self)


def plan_user(cfg: "Config", *, sandbox: bool = True, config_file: Path | None = None) -> UnitPlan:
    """The installing user's node, with its XDG dirs pinned as they resolve now (the user
    manager's environment may differ from this shell's)."""
    from hearthnet.paths import default_paths, run_dir_name

    base = default_paths()
    env = {"XDG_DATA_HOME": str(base.data_dir.parent), "XDG_CONFIG_HOME": str(base.config_dir.parent),
           "XDG_STATE_HOME": str(base.log_dir.parent.parent), "XDG_CACHE_HOME": str(base.cache_dir.parent)}
    if config_file is not None:
        env["HEARTHNET_CONFIG"] = str(config_file.absolute())
    name = run_dir_name(base.data_dir)
    env["HEARTHNET_RUN_DIR"] = f"%t/{name}"  # what paths.run_dir_for finds while it runs
    writable = [cfg.paths.data_dir, cfg.paths.cache_dir, cfg.paths.log_dir, cfg.identity.keys_dir,
                cfg.file.blobs_dir, cfg.rag.corpora_dir]
    if cfg.community.state_dir is not None:
        writable.append(cfg.community.state_dir)
    return UnitPlan("user", [*entry_point(), "run", "--no-ui"], env, sandbox,
                    read_write_paths=[str(p) for p in _outermost(writable)], runtime_dir=name)


def plan_system(*, sandbox: bool = True) -> UnitPlan:
    env = dict(SYSTEM_XDG, HEARTHNET_RUN_DIR=SYSTEM_RUN_DIR)
    binds = [str(p) for p in install_roots() if _under_home(p)]
    return UnitPlan("system", [*entry_point(), "run", "--no-ui"], env, sandbox, bind_read_only=binds)


def _quote(value: str, *, exec_arg: bool = False) -> str:
    """One word of a unit setting: '%' is a specifier and '$' (in ExecStart=) a variable,
    so both are doubled; words with blanks or quotes are double-quoted."""
    value = value.replace("%", "%%")
    if exec_arg:
        value = value.replace("$", "$$")
    if any(c in value for c in ' \t"\'\\;'):
        value = '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return value


def render_unit(plan: UnitPlan) -> str:
    system = plan.scope == "system"
    exec_start = " ".join(_quote(a, exec_arg=True) for a in plan.exec_start)
    env_lines = []
    for key, value in plan.environment.items():
        escaped = value if value.startswith("%t/") else value.replace("%", "%%")
        env_lines.append(f'Environment="{key}={escaped}"')
    lines = [
        "# Written by `hearthnet service install`; `hearthnet service uninstall` removes it.",
        "# Local changes belong in an override: systemctl " + ("" if system else "--user ") +
        "edit hearthnet",
        "[Unit]",
        "Description=HearthNet node (hearthnet run)",
    ]
    if system:  # a user manager cannot order itself after the system's network target
        lines += ["Wants=network-online.target", "After=network-online.target"]
    lines += [
        "",
        "[Service]",
        "Type=notify",
        "# `hearthnet run` (the main process) sends READY/STATUS/WATCHDOG/STOPPING itself.",
        "NotifyAccess=main",
        f"ExecStart={exec_start}",
        *env_lines,
        f"WatchdogSec={WATCHDOG_SECONDS}",
        "# A missed watchdog stops the node in order (run handles SIGTERM), then restarts it.",
        "WatchdogSignal=SIGTERM",
        "Restart=on-failure",
        f"RestartSec={RESTART_SECONDS}",
        f"TimeoutStartSec={START_TIMEOUT_SECONDS}",
        f"TimeoutStopSec={STOP_TIMEOUT_SECONDS}",
        "# SIGTERM to `hearthnet run` only: it stops supervisord and the workers in order;",
        "# whatever is left when the timeout ends is killed.",
        "KillMode=mixed",
        "UMask=0077",
        f"RuntimeDirectory={plan.runtime_dir}",
        "RuntimeDirectoryMode=0700",
    ]
    if system:
        lines += [f"User={SERVICE_USER}", f"Group={SERVICE_USER}"]
        lines += [f"{key}=hearthnet" for key in SYSTEM_DIRS]
        lines += ["StateDirectoryMode=0700", "LogsDirectoryMode=0700", "CacheDirectoryMode=0700",
                  "ConfigurationDirectoryMode=0700"]
    if plan.sandbox:
        lines += _sandbox_lines(plan)
    lines += ["", "[Install]", f"WantedBy={'multi-user.target' if system else 'default.target'}", ""]
    return "\n".join(lines)


def _sandbox_lines(plan: UnitPlan) -> list[str]:
    system = plan.scope == "system"
    lines = [
        "# Sandbox: read-only system, private /tmp, no privilege gain.",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "PrivateTmp=yes",
        "ProtectKernelTunables=yes",
        "ProtectKernelModules=yes",
        "ProtectControlGroups=yes",
        "RestrictSUIDSGID=yes",
        "RestrictRealtime=yes",
        "LockPersonality=yes",
        "SystemCallArchitectures=native",
        # netlink: discovery lists the interfaces (getifaddrs)
        "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6 AF_NETLINK",
        "# No PrivateDevices=: the LLM worker may need a GPU (/dev/dri, /dev/nvidia*, /dev/kfd).",
        "# A node without one can add PrivateDevices=yes in an override.",
    ]
    if system and plan.bind_read_only:
        # Not ProtectHome=tmpfs: up to systemd 256 that tmpfs is writable, mode 1777
        # (systemd issue #34825), though documented read-only; this is what it should be.
        lines += ["# This install lives under a home directory: only it is visible, read-only.",
                  "TemporaryFileSystem=" + " ".join(f"{h}:ro" for h in HOME_ROOTS),
                  "BindReadOnlyPaths=" + " ".join(_quote(p) for p in plan.bind_read_only)]
    elif system:
        lines.append("ProtectHome=yes")
    else:
        # systemd.exec(5): a user manager applies ProtectSystem=, ProtectHome=, PrivateTmp=
        # & co. only with PrivateUsers=; without it they are silently skipped.
        lines += ["# In a user namespace of its own: without one a user manager skips the",
                  "# file-system sandbox below.",
                  "PrivateUsers=yes"]
        # The node's own data lives in $HOME: home is read-only except those dirs.
        lines.append("ProtectHome=read-only")
        if plan.read_write_paths:
            lines.append("ReadWritePaths=" + " ".join(_quote(p) for p in plan.read_write_paths))
    return lines


# ---- talking to systemd --------------------------------------------------------------

class Systemctl:
    """`systemctl [--user] ...` with its failures turned into plain errors."""

    def __init__(self, scope: Scope) -> None:
        self.scope = scope

    def argv(self, *args: str) -> list[str]:
        return ["systemctl", *(["--user"] if self.scope == "user" else []), *args]

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        argv = self.argv(*args)
        if shutil.which("systemctl") is None:
            raise SystemdUnavailable(message="systemctl is not installed: this machine does not "
                                             "use systemd, so `hearthnet service` cannot manage the node "
                                             "(run `hearthnet run --no-ui` under your own supervisor)")
        try:
            proc = subprocess.run(argv, capture_output=True, text=True, timeout=60,
                                  stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            raise HearthNetError("timeout", f"`{' '.join(argv)}` did not answer within 60 s") from None
        if check and proc.returncode != 0:
            detail = (proc.stderr or proc.stdout).strip().splitlines()
            first = detail[0] if detail else f"exit {proc.returncode}"
            if any(marker in (proc.stderr or "") for marker in _NO_MANAGER):
                raise SystemdUnavailable(message=self._no_manager_text(),
                                         hint=f"systemctl said: {first.rstrip('.')}. Without systemd, run "
                                              "`hearthnet run --no-ui` under the supervisor you have "
                                              "(`service install --no-enable` still writes the unit "
                                              "for a machine image)")
            raise HearthNetError("systemctl_failed", f"`{' '.join(argv)}` failed: {first}")
        return proc

    def _no_manager_text(self) -> str:
        if self.scope == "user":
            return ("there is no systemd user manager to talk to: log in through a session that "
                    "starts one (ssh or console with pam_systemd), or install with --system as root")
        return "systemd is not running on this machine (PID 1 is another init), so there is no " \
               "service manager to manage the node"

    def reachable(self) -> bool:
        """True when a service manager answers; False when there is none."""
        try:
            self.run("show", "--property=Version")
        except SystemdUnavailable:
            return False
        return True

    def show(self) -> dict[str, str]:
        out = self.run("show", UNIT_NAME, "--property=" + ",".join(SHOW_PROPERTIES)).stdout
        props: dict[str, str] = {}
        for line in out.splitlines():
            key, sep, value = line.partition("=")
            if sep:
                props[key.strip()] = value.strip()
        return props


# ---- install / uninstall / status ----------------------------------------------------

@dataclass
class InstallReport:
    scope: Scope
    unit_path: str
    unit: str
    dry_run: bool
    written: bool = False
    reloaded: bool = False
    enabled: bool = False
    started: bool = False
    initialised: bool = True
    user: str | None = None
    user_created: bool = False
    cli_prefix: str = ""
    commands: list[list[str]] = field(default_factory=list)
    next_steps: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"scope": self.scope, "unit_path": self.unit_path, "unit": self.unit,
                "dry_run": self.dry_run, "written": self.written, "reloaded": self.reloaded,
                "enabled": self.enabled, "started": self.started, "initialised": self.initialised,
                "user": self.user, "user_created": self.user_created, "cli_prefix": self.cli_prefix,
                "commands": self.commands, "next_steps": self.next_steps}


def cli_prefix(scope: Scope) -> str:
    """How the owner runs the CLI against this service's node (status, log, invite …)."""
    entry = " ".join(entry_point())
    if scope == "user":
        return entry  # paths.run_dir_for finds the run dir in $XDG_RUNTIME_DIR
    env = " ".join(f"{k}={v}" for k, v in dict(SYSTEM_XDG, HEARTHNET_RUN_DIR=SYSTEM_RUN_DIR).items())
    return f"sudo -u {SERVICE_USER} env {env} {entry}"


def system_initialised() -> bool:
    """The system node has its config and device key (hearthnet init as the service user)."""
    return (Path(SYSTEM_DIRS["ConfigurationDirectory"]) / "config.toml").exists() and \
        (Path(SYSTEM_DIRS["StateDirectory"]) / "keys" / "device.ed25519").exists()


def install(plan: UnitPlan, *, dry_run: bool, enable: bool, initialised: bool) -> InstallReport:
    report = InstallReport(plan.scope, str(plan.path), plan.render(), dry_run,
                           initialised=initialised, cli_prefix=cli_prefix(plan.scope),
                           user=SERVICE_USER if plan.scope == "system" else None)
    if dry_run:
        return report
    if plan.scope == "system" and os.geteuid() != 0:
        raise HearthNetError("unauthorized", "installing a system service needs root",
                             hint="run it with sudo, or install for yourself with --user")
    ctl = Systemctl(plan.scope)
    manager = ctl.reachable()
    if enable and not manager:
        ctl.run("show", "--property=Version")  # raises the plain explanation
    if plan.scope == "system":
        report.user_created = ensure_service_user()
        prepare_system_dirs()
    else:
        for p in plan.read_write_paths:  # ReadWritePaths= of a missing dir fails the start
            Path(p).mkdir(parents=True, exist_ok=True, mode=0o700)
    write_unit(plan.path, report.unit)
    report.written = True
    if manager:
        report.commands.append(ctl.argv("daemon-reload"))
        ctl.run("daemon-reload")
        report.reloaded = True
    if enable and initialised:
        report.commands.append(ctl.argv("enable", "--now", UNIT_NAME))
        ctl.run("enable", "--now", UNIT_NAME)
        report.enabled = report.started = True
    report.next_steps = _next_steps(plan.scope, report)
    return report


def _next_steps(scope: Scope, report: InstallReport) -> list[str]:
    ctl = "systemctl" + ("" if scope == "system" else " --user")
    sudo = "sudo " if scope == "system" else ""
    steps = []
    if not report.initialised:
        steps.append(f"create the node first: {report.cli_prefix} init")
    if not report.enabled:
        steps.append(f"start it now and at every boot: {sudo}{ctl} enable --now {UNIT_NAME}")
    if scope == "user":
        steps.append("keep it running when you are logged out: loginctl enable-linger $USER")
    steps.append(f"see it: {report.cli_prefix} status (and {sudo}{ctl} status hearthnet, "
                 f"journalctl {'' if scope == 'system' else '--user '}-u hearthnet)")
    return steps


def write_unit(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def ensure_service_user() -> bool:
    """Create the system user `hearthnet` (no login, home /var/lib/hearthnet) if missing;
    True when it was created."""
    try:
        pwd.getpwnam(SERVICE_USER)
        return False
    except KeyError:
        pass
    if shutil.which("useradd") is None:
        raise HearthNetError("internal_error", f"no useradd here to create the system user {SERVICE_USER}",
                             hint=f"create a system user named {SERVICE_USER} yourself, then run this again")
    nologin = next((s for s in ("/usr/sbin/nologin", "/sbin/nologin") if Path(s).exists()), "/bin/false")
    proc = subprocess.run(["useradd", "--system", "--user-group", "--no-create-home",
                           "--home-dir", SYSTEM_DIRS["StateDirectory"], "--shell", nologin,
                           "--comment", "HearthNet node", SERVICE_USER],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise HearthNetError("internal_error", f"useradd {SERVICE_USER} failed: {proc.stderr.strip()}")
    return True


def prepare_system_dirs() -> None:
    """Create the node's directories owned by the service user, 0700, so `hearthnet init`
    can run as that user before the first start (systemd would create them only then)."""
    pw = pwd.getpwnam(SERVICE_USER)
    for path in SYSTEM_DIRS.values():
        p = Path(path)
        p.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chown(p, pw.pw_uid, pw.pw_gid)
        os.chmod(p, 0o700)


@dataclass
class UninstallReport:
    scope: Scope
    unit_path: str
    removed: bool
    commands: list[list[str]]
    data_kept: list[str]

    def to_dict(self) -> dict[str, Any]:
        return {"scope": self.scope, "unit_path": self.unit_path, "removed": self.removed,
                "commands": self.commands, "data_kept": self.data_kept}


def uninstall(scope: Scope, data_dirs: list[str]) -> UninstallReport:
    """Stop and disable the service, remove its unit, reload; the node's data stays."""
    if scope == "system" and os.geteuid() != 0:
        raise HearthNetError("unauthorized", "removing the system service needs root", hint="run it with sudo")
    ctl = Systemctl(scope)
    ctl.run("show", "--property=Version")  # no manager: say so before touching anything
    path = unit_path(scope)
    commands: list[list[str]] = []
    if not path.exists():
        return UninstallReport(scope, str(path), False, commands, data_dirs)
    commands.append(ctl.argv("disable", "--now", UNIT_NAME))
    ctl.run("disable", "--now", UNIT_NAME)
    path.unlink()
    commands.append(ctl.argv("daemon-reload"))
    ctl.run("daemon-reload")
    ctl.run("reset-failed", UNIT_NAME, check=False)  # forget a failed state of the gone unit
    return UninstallReport(scope, str(path), True, commands, data_dirs)


def service_status(scope: Scope) -> dict[str, Any]:
    """The unit as systemd sees it (`systemctl show`), with stable snake_case keys."""
    props = Systemctl(scope).show()

    def num(key: str) -> int | None:
        try:
            return int(props.get(key, ""))
        except ValueError:
            return None

    load = props.get("LoadState", "")
    main_pid = num("MainPID")
    return {
        "scope": scope,
        "unit": UNIT_NAME,
        "unit_path": props.get("FragmentPath") or str(unit_path(scope)),
        "installed": load not in ("", "not-found"),
        "load_state": load,
        "active_state": props.get("ActiveState", ""),
        "sub_state": props.get("SubState", ""),
        "unit_file_state": props.get("UnitFileState", ""),
        "main_pid": main_pid or None,
        "n_restarts": num("NRestarts"),
        "result": props.get("Result", ""),
        "status_text": props.get("StatusText", ""),
        "since": props.get("ExecMainStartTimestamp", ""),
        "cli_prefix": cli_prefix(scope),
    }
