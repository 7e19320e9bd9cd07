"""`hearthnet init`: create this node's identity, config and community, or join one with
`--join INVITE` (hearthnet.node_init does the work; this module asks the questions)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import click

from hearthnet.cli import boundary
from hearthnet.cli.render import Output

if TYPE_CHECKING:
    from hearthnet.cli.state import CliState

PROFILES = ("anchor", "hearth", "spark", "bridge")  # spec core-identity-config §6


class RichPrompter:
    """node_init's Prompter, on the terminal. Questions go to stderr so stdout carries only
    the result (`init --json` stays parseable). Ctrl-C or end of input aborts (exit 2)."""

    def __init__(self, out: Output) -> None:
        self.out = out

    def ask(self, text: str, default: str) -> str:
        from rich.prompt import Prompt

        extra = {"default": default} if default else {}
        return Prompt.ask(self.out.text(text), console=self.out.err_console, **extra)

    def confirm(self, text: str, default: bool) -> bool:
        from rich.prompt import Confirm

        return Confirm.ask(self.out.text(text), console=self.out.err_console, default=default)


@dataclass
class InitCommandResult:
    result: Any  # hearthnet.node_init.InitResult

    def to_dict(self) -> dict[str, Any]:
        return self.result.to_dict()

    def human(self, out: Output) -> None:
        out.echo(self.result.message)


def init(state: "CliState", *, name: str | None, profile: str | None, community_name: str | None,
         interactive: bool, out: Output, join: str | None = None) -> InitCommandResult:
    from hearthnet.node_init import InitOptions, init_node

    opts = InitOptions(name=name, profile=profile, interactive=interactive,
                       config_path=state.config_path, community_name=community_name, join=join)
    result = init_node(opts, prompt=RichPrompter(out))
    llm = _offer_local_llm(state, RichPrompter(out), ask=interactive and result.changed)
    if llm:
        result.message += f"\n{llm}"
    return InitCommandResult(result)


def _offer_local_llm(state: "CliState", prompt: RichPrompter, *, ask: bool) -> str | None:
    """An Ollama / llama.cpp server already running here: offered (asked) or hinted."""
    from hearthnet.config import load_config
    from hearthnet.models.detect import init_offer

    return init_offer(load_config(state.config_path), prompt, ask=ask)


@click.command("init")
@click.option("--name", help="Display name of this node (default: the host name).")
@click.option("--profile", type=click.Choice(PROFILES), help="Node profile (default: detected from the hardware).")
@click.option("--community-name", help="Name of the new community this node founds.")
@click.option("--join", "join", metavar="INVITE",
              help="Join an existing community instead: the invite text, or a file / QR PNG holding it.")
@click.option("--non-interactive", is_flag=True, help="Ask nothing; use the options and defaults.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.pass_obj
def cli(state: "CliState", name: str | None, profile: str | None, community_name: str | None,
        join: str | None, non_interactive: bool, as_json: bool) -> None:
    """Create this node: device key, config.toml and a new community (or, with --join,
    membership of an existing one; the invite must be for this device's id, see
    `hearthnet id`).

    Running it again on an initialised node changes nothing. Exit 0 on success,
    2 if you abort, 1 on error, 4 if the invite is invalid, expired or for another node.
    """
    if join is not None and community_name is not None:
        raise click.UsageError("--join and --community-name exclude each other: join a community or found one")
    out = Output()
    boundary.run(
        lambda: init(state, name=name, profile=profile, community_name=community_name,
                     interactive=not non_interactive, out=out, join=join),
        as_json=as_json, state=state, out=out,
    )
