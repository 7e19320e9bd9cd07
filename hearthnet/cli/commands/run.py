"""`hearthnet run`: start the node (supervisord and its process tree) in the foreground."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from hearthnet.cli import boundary
from hearthnet.cli.render import Output

if TYPE_CHECKING:
    from hearthnet.cli.state import CliState


@dataclass
class RunResult:
    exit_code: int

    def to_dict(self) -> dict[str, Any]:
        return {"exit_code": self.exit_code}

    def human(self, out: Output) -> None:
        return None  # progress was printed while it ran


def ready_text(data: dict[str, Any], stop_how: str) -> str:
    """Where the node can be reached, once it is: the local API is the run dir's unix
    socket (the CLI and the UI use it), the TCP port is the peer API (other nodes)."""
    host, port = data.get("peer_host"), data.get("peer_port")
    where = f"port {port} on every interface" if host in ("0.0.0.0", "::", "", None) else f"{host}:{port}"
    lines = [f"node ready; stop with {stop_how}",
             f"  local API: {data.get('socket')} (unix socket, for hearthnet commands on this machine)",
             f"  peer API:  {where} (HTTPS, for other nodes of the community)"]
    if data.get("ui"):
        lines.append(f"  UI:        {data['ui']}")
    return "\n".join(lines)


def progress_printer(out: Output) -> Any:
    """run_node's on_event callback: a rich spinner while the tree starts or stops (on a
    terminal), and one line on stderr per step."""
    spinner: list[Any] = []
    from hearthnet.sdnotify import under_systemd

    stop_how = "systemctl stop hearthnet" if under_systemd() else "Ctrl-C"

    def spin(text: str) -> None:
        stop_spin()
        # Asking rich would import it: a node under systemd (no tty) then holds rich for
        # months for nothing (bench/memory.py).
        if _may_be_terminal(out.err) and out.err_console.is_terminal:
            spinner.append(out.err_console.status(text))
            spinner[0].start()

    def stop_spin() -> None:
        while spinner:
            spinner.pop().stop()

    def on_event(kind: str, data: dict[str, Any]) -> None:
        text = {
            "starting": lambda: f"starting the node (supervisord pid {data.get('pid')}) …",
            "ready": lambda: ready_text(data, stop_how),
            "slow": lambda: f"still starting … (logs: {data.get('log')}, or `hearthnet log -f`)",
            "failed": lambda: f"the node failed to start; see the logs in {data.get('log')}",
            "stopping": lambda: "stopping …",
            "stopped": lambda: "stopped",
        }.get(kind, lambda: f"{kind}: {data}")()
        stop_spin()
        out.echo(text, err=True)
        if kind in ("starting", "stopping"):
            spin("waiting for the workers" if kind == "starting" else "stopping every process")

    return on_event


def _may_be_terminal(stream: Any) -> bool:
    import os

    isatty = getattr(stream, "isatty", None)
    return bool(os.environ.get("FORCE_TERMINAL")) or bool(isatty and isatty())


def run(state: "CliState", *, config_flag: Path | None, no_ui: bool, debug: bool, out: Output) -> RunResult:
    from hearthnet.supervise import run_node

    cfg = state.config()
    try:
        code = run_node(cfg, no_ui=no_ui, debug=debug, config_flag=config_flag, on_event=progress_printer(out))
    except KeyboardInterrupt:
        # run_node turns SIGINT into a clean stop; a second Ctrl-C during startup lands here.
        code = 0
    return RunResult(code)


@click.command("run")
@click.option("--config", "config_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Path to config.toml (overrides the global --config).")
@click.option("--no-ui", is_flag=True, help="Do not start the Gradio UI (headless anchors, Raspberry Pi).")
@click.option("--debug", is_flag=True, help="Log at debug level.")
@click.pass_obj
def cli(state: "CliState", config_path: Path | None, no_ui: bool, debug: bool) -> None:
    """Run this node until Ctrl-C / SIGTERM, then stop the whole process tree.

    Exits 1 with the `hearthnet init` command to run if the node has no keys or
    community yet, or if its port is taken.
    """
    state = state.with_config_path(config_path)
    out = Output()
    boundary.run(
        lambda: run(state, config_flag=state.config_path, no_ui=no_ui, debug=debug, out=out),
        state=state, out=out,
    )
