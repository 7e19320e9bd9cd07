"""`hearthnet id`: this device's node id, as text and QR code, for an inviter.

Works on a fresh machine: if there is no device key yet it creates one, and nothing else
(no config, no community), so a new device can be invited before `hearthnet init`."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import click

from hearthnet.cli import boundary
from hearthnet.cli.render import Output

if TYPE_CHECKING:
    from pathlib import Path

    from hearthnet.cli.state import CliState


@dataclass
class IdResult:
    node_id: str
    node_id_short: str
    id_text: str
    created: bool
    keys_dir: "Path"
    png: "Path | None" = None
    qr: str = field(default="", repr=False)

    def to_dict(self) -> dict[str, Any]:
        return {"node_id": self.node_id, "node_id_short": self.node_id_short, "id_text": self.id_text}

    def human(self, out: Output) -> None:
        if self.created:
            out.echo(f"Created this device's key in {self.keys_dir}.", err=True)
        out.echo(f"This device: {self.node_id_short}")
        out.echo(f"Full node id: {self.node_id}")
        out.echo()
        out.echo(self.qr)
        out.echo()
        out.echo(self.id_text)
        out.echo()
        if self.png is not None:
            out.echo(f"QR code saved to {self.png}")
        out.echo("Show this code (or send the text above) to a member of the community; they run")
        out.echo("  hearthnet invite create --node-id '<the text>'")


def show_id(state: "CliState", png: str | None) -> IdResult:
    from pathlib import Path

    from hearthnet.identity import keys
    from hearthnet.onboarding.invite import encode_node_id_text
    from hearthnet.onboarding.qr import terminal_qr, write_qr_png
    from hearthnet.profile import default_display_name

    cfg = state.config()
    keys_dir = cfg.identity.keys_dir
    created = not (keys_dir / keys.PRIVATE_KEY_FILE).exists()
    if created:
        from hearthnet.paths import ensure_private_dir

        ensure_private_dir(cfg.paths.data_dir)  # 0700, as `init` makes it
    kp = keys.load_or_generate(keys_dir)  # never replaces an existing key
    name = cfg.node.display_name or default_display_name()
    text = encode_node_id_text(kp.node_id_full, name)
    written = write_qr_png(text, Path(png).expanduser()) if png else None
    return IdResult(kp.node_id_full, kp.node_id_short, text, created, keys_dir, written, terminal_qr(text))


@click.command("id")
@click.option("--png", type=click.Path(dir_okay=False), metavar="PATH", help="Also save the QR code as a PNG.")
@click.option("--json", "as_json", is_flag=True, help="Print {node_id, node_id_short, id_text}.")
@click.pass_obj
def cli(state: "CliState", png: str | None, as_json: bool) -> None:
    """Show this device's node id (text and QR code) so a member can invite it.

    Creates the device key if there is none yet, and nothing else.
    """
    boundary.run(lambda: show_id(state, png), as_json=as_json, state=state)
