"""`hearthnet service install|uninstall|status`: the node as a systemd service
(hearthnet/systemd.py)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import click

from hearthnet.cli import boundary
from hearthnet.cli.render import Output

if TYPE_CHECKING:
    from pathlib import Path

    from hearthnet.cli.state import CliState
    from hearthnet.systemd import InstallReport, Scope, UninstallReport


@dataclass
class InstallResult:
    report: "InstallReport"

    def to_dict(self) -> dict[str, Any]:
        return self.report.to_dict()

    def human(self, out: Output) -> None:
        r = self.report
        if r.dry_run:
            out.echo(r.unit, nl=False)
            out.echo(f"# dry run: nothing written; would go to {r.unit_path}", err=True)
            return
        out.echo(f"Wrote {r.unit_path} ({r.scope} service)")
        if r.user_created:
            out.echo(f"Created the system user {r.user}")
        if r.started:
            out.echo("Enabled and started: it runs now and at every boot.")
        elif not r.reloaded:
            out.echo("systemd is not running here: the unit is written but not loaded.")
        if r.next_steps:
            out.echo("Next:")
            for step in r.next_steps:
                out.echo(f"  - {step}")


@dataclass
class UninstallResult:
    report: "UninstallReport"

    def to_dict(self) -> dict[str, Any]:
        return self.report.to_dict()

    def human(self, out: Output) -> None:
        r = self.report
        if r.removed:
            out.echo(f"Stopped and disabled hearthnet.service; removed {r.unit_path}.")
        else:
            out.echo(f"No {r.scope} service installed (nothing at {r.unit_path}).")
        if r.data_kept:
            out.echo("The node's data is kept: " + ", ".join(r.data_kept))


@dataclass
class StatusResult:
    doc: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return self.doc

    def human(self, out: Output) -> None:
        d = self.doc
        if not d["installed"]:
            out.echo(f"hearthnet.service is not installed ({d['scope']}); "
                     f"`hearthnet service install --{d['scope']}` adds it.")
            return
        state = f"{d['active_state']} ({d['sub_state']})"
        color = {"active": "green", "failed": "red", "activating": "yellow"}.get(d["active_state"])
        out.echo(f"hearthnet.service ({d['scope']}): " + (out.style(state, fg=color) if color else state))
        rows = [("unit file", f"{d['unit_path']} ({d['unit_file_state'] or '-'})"),
                ("main pid", str(d["main_pid"] or "-")), ("restarts", str(d["n_restarts"] or 0)),
                ("since", d["since"] or "-"), ("status", d["status_text"] or "-"),
                ("node cli", f"{d['cli_prefix']} status")]
        for key, value in rows:
            out.echo(f"  {key:10} {value}")


def _scope(user: bool, system: bool) -> "Scope":
    from hearthnet.systemd import default_scope

    if user and system:
        raise click.UsageError("choose one of --user and --system")
    return "user" if user else "system" if system else default_scope()


def install(state: "CliState", scope: "Scope", *, dry_run: bool, enable: bool, sandbox: bool) -> InstallResult:
    from hearthnet import systemd

    if scope == "system":
        plan = systemd.plan_system(sandbox=sandbox)
        initialised = systemd.system_initialised()
    else:
        cfg = state.config()
        plan = systemd.plan_user(cfg, sandbox=sandbox, config_file=_config_file(state))
        initialised = _initialised(cfg)
    return InstallResult(systemd.install(plan, dry_run=dry_run, enable=enable, initialised=initialised))


def _config_file(state: "CliState") -> "Path | None":
    """A config.toml named by --config or HEARTHNET_CONFIG is pinned in the unit (the user
    manager does not see this shell's variables); the default one needs no pin."""
    import os
    from pathlib import Path

    if state.config_path is not None:
        return Path(state.config_path)
    env = os.environ.get("HEARTHNET_CONFIG")
    return Path(env) if env else None


def _initialised(cfg: Any) -> bool:
    from hearthnet.errors import HearthNetError
    from hearthnet.supervise import check_initialised

    try:
        check_initialised(cfg, None)
    except HearthNetError:
        return False
    return True


def uninstall(state: "CliState", scope: "Scope") -> UninstallResult:
    from hearthnet import systemd

    if scope == "system":
        kept = list(systemd.SYSTEM_DIRS.values())
    else:
        paths = state.config().paths
        kept = [str(p) for p in (paths.data_dir, paths.config_dir, paths.log_dir, paths.cache_dir)]
    return UninstallResult(systemd.uninstall(scope, kept))


_SCOPE_OPTIONS = [
    click.option("--user", "user", is_flag=True, help="Your own node, under your systemd user manager (default unless root)."),
    click.option("--system", "system", is_flag=True, help="A machine-wide anchor run by the system user `hearthnet` (default as root)."),
    click.option("--json", "as_json", is_flag=True, help="Print the result as JSON."),
]


def _scoped(fn: Any) -> Any:
    for option in reversed(_SCOPE_OPTIONS):
        fn = option(fn)
    return fn


@click.group("service")
def cli() -> None:
    """Run this node as a systemd service (always on, restarted on failure)."""


@cli.command("install")
@_scoped
@click.option("--dry-run", is_flag=True, help="Print the unit; write and change nothing.")
@click.option("--no-enable", is_flag=True, help="Write the unit (and reload systemd) but do not enable or start it.")
@click.option("--no-sandbox", is_flag=True, help="Leave out the sandboxing settings (for a kernel without user namespaces).")
@click.pass_obj
def install_cmd(state: "CliState", user: bool, system: bool, as_json: bool, dry_run: bool,
                no_enable: bool, no_sandbox: bool) -> None:
    """Write hearthnet.service and enable it now and at boot (Type=notify, watchdog,
    Restart=on-failure, sandboxed).

    Exit 1 when systemd is not running here (systemd_unavailable), 4 for --system
    without root.
    """
    scope = _scope(user, system)
    boundary.run(lambda: install(state, scope, dry_run=dry_run, enable=not no_enable, sandbox=not no_sandbox),
                 as_json=as_json, state=state)


@cli.command("uninstall")
@_scoped
@click.pass_obj
def uninstall_cmd(state: "CliState", user: bool, system: bool, as_json: bool) -> None:
    """Stop and disable the service and remove its unit; the node's data stays."""
    scope = _scope(user, system)
    boundary.run(lambda: uninstall(state, scope), as_json=as_json, state=state)


@cli.command("status")
@_scoped
@click.pass_obj
def status_cmd(state: "CliState", user: bool, system: bool, as_json: bool) -> None:
    """The service as systemd sees it: state, main pid, restarts, the node's STATUS line."""
    from hearthnet.systemd import service_status

    scope = _scope(user, system)
    boundary.run(lambda: StatusResult(service_status(scope)), as_json=as_json, state=state)
