"""The `hearthnet` command (spec M12; STYLE.md).

This module only declares the group. Each subcommand lives in its own module under
`hearthnet.cli.commands` and is imported when it is run (or listed by --help), so
`hearthnet version` loads click and the standard library and nothing else. Command
modules import anything heavier inside their helper functions.
"""
from __future__ import annotations

import importlib
from typing import Any

import click

from hearthnet.cli.state import CliState

PROG_NAME = "hearthnet"
COMPLETE_VAR = "_HEARTHNET_COMPLETE"

# Command name -> module defining it as the attribute `cli`.
COMMANDS: dict[str, str] = {
    "init": "hearthnet.cli.commands.init",
    "run": "hearthnet.cli.commands.run",
    "status": "hearthnet.cli.commands.status",
    "caps": "hearthnet.cli.commands.caps",
    "call": "hearthnet.cli.commands.call",
    "log": "hearthnet.cli.commands.log",
    "trace": "hearthnet.cli.commands.trace",
    "doctor": "hearthnet.cli.commands.doctor",
    "export": "hearthnet.cli.commands.export",
    "bundle": "hearthnet.cli.commands.bundle",
    "erase": "hearthnet.cli.commands.erase",
    "id": "hearthnet.cli.commands.id",
    "invite": "hearthnet.cli.commands.invite",
    "member": "hearthnet.cli.commands.member",
    "file": "hearthnet.cli.commands.file",
    "rag": "hearthnet.cli.commands.rag",
    "ask": "hearthnet.cli.commands.ask",
    "model": "hearthnet.cli.commands.model",
    "chat": "hearthnet.cli.commands.chat",
    "market": "hearthnet.cli.commands.market",
    "alert": "hearthnet.cli.commands.alert",
    "peer": "hearthnet.cli.commands.peer",
    "service": "hearthnet.cli.commands.service",
    "watch": "hearthnet.cli.commands.watch",
    "version": "hearthnet.cli.commands.version",
    "completion": "hearthnet.cli.commands.completion",
}


class LazyGroup(click.Group):
    """A click group whose subcommands are imported on first use."""

    def __init__(self, *args: Any, lazy_commands: dict[str, str] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lazy_commands = dict(lazy_commands or {})

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | set(self.lazy_commands))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.lazy_commands:
            module = importlib.import_module(self.lazy_commands[cmd_name])
            command = module.cli
            if not isinstance(command, click.Command):
                raise TypeError(f"{module.__name__}.cli is not a click command")
            return command
        return super().get_command(ctx, cmd_name)

    def main(self, *args: Any, **kwargs: Any) -> Any:
        # The same program name and completion variable whether started as the console
        # script or as `python -m hearthnet`.
        kwargs.setdefault("prog_name", PROG_NAME)
        kwargs.setdefault("complete_var", COMPLETE_VAR)
        return super().main(*args, **kwargs)


@click.group(
    cls=LazyGroup,
    lazy_commands=COMMANDS,
    context_settings={"help_option_names": ["-h", "--help"]},
)
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False),  # a str: pathlib is loaded only by commands that read config
    default=None,
    help="Path to config.toml (default: $HEARTHNET_CONFIG or the XDG config dir).",
)
@click.pass_context
def main(ctx: click.Context, config_path: str | None) -> None:
    """HearthNet: a neighbourhood node that keeps AI and coordination running offline.

    Exit codes: 0 ok, 1 error, 2 aborted or bad usage, 3 no running node,
    4 auth failure, 5 disk full or capacity exceeded.
    """
    ctx.obj = CliState(config_path=config_path)


__all__ = ["main", "LazyGroup", "COMMANDS"]
