"""`hearthnet completion SHELL`: print the shell completion script."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import click

from hearthnet.cli import boundary
from hearthnet.cli.render import Output

SHELLS = ("bash", "zsh", "fish")


@dataclass
class CompletionResult:
    shell: str
    script: str

    def to_dict(self) -> dict[str, Any]:
        return {"shell": self.shell, "script": self.script}

    def human(self, out: Output) -> None:
        out.echo(self.script)


def completion_script(shell: str) -> CompletionResult:
    from click.shell_completion import get_completion_class

    from hearthnet.cli import COMPLETE_VAR, PROG_NAME, main

    cls = get_completion_class(shell)
    if cls is None:
        raise click.BadParameter(f"unsupported shell {shell!r}", param_hint="SHELL")
    return CompletionResult(shell, cls(main, {}, PROG_NAME, COMPLETE_VAR).source())


@click.command("completion")
@click.argument("shell", type=click.Choice(SHELLS))
def cli(shell: str) -> None:
    """Print the completion script for SHELL. Install it with, e.g.:

    \b
        bash:  eval "$(hearthnet completion bash)"      (in ~/.bashrc)
        zsh:   eval "$(hearthnet completion zsh)"       (in ~/.zshrc)
        fish:  hearthnet completion fish > ~/.config/fish/completions/hearthnet.fish
    """
    boundary.run(lambda: completion_script(shell))
