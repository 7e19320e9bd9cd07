"""`hearthnet invite create|redeem`: invite a device into this community, or join one
with an invite (hearthnet.onboarding does the work)."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from hearthnet.cli import boundary
from hearthnet.cli.render import Output

if TYPE_CHECKING:
    from hearthnet.cli.state import CliState

LEVELS = ("member", "trusted")


def create(state: "CliState", *, node_id: str, level: str, ttl: float, out_png: str | None,
           name: str | None) -> Any:
    from pathlib import Path

    from hearthnet.onboarding.create import create_invite

    return create_invite(state.config(), node_id_text=node_id, level=level, ttl_hours=ttl,
                         png=Path(out_png).expanduser() if out_png else None, display_name=name)


def redeem(state: "CliState", *, text: str, yes: bool, out: Output) -> Any:
    from hearthnet.cli.commands.init import RichPrompter
    from hearthnet.errors import IdentityError
    from hearthnet.identity import keys
    from hearthnet.node_init import DefaultsPrompter
    from hearthnet.onboarding.errors import OnboardingError
    from hearthnet.onboarding.invite import decode_invite
    from hearthnet.onboarding.join import load_invite_text, redeem_invite

    cfg = state.config()
    try:
        kp = keys.load(cfg.identity.keys_dir)
    except IdentityError as exc:
        if exc.code != "keys_missing":
            raise
        decode_invite(load_invite_text(text))  # a broken invite is the first thing to say
        raise OnboardingError("invitee_mismatch", "this device has no key yet, so no invite can have been made for it",
                              hint="run `hearthnet id`, give the id it shows to a member of the community, "
                                   "and redeem the invite they create") from None
    prompt = DefaultsPrompter() if yes else RichPrompter(out)
    return redeem_invite(cfg, kp, text, prompt=prompt)


@click.group("invite")
def cli() -> None:
    """Invite a device into this community, or join one with an invite."""


@cli.command("create")
@click.option("--node-id", required=True, metavar="NODEID",
              help="The invited device: its full node id or the hearthnet-id:// text `hearthnet id` shows there.")
@click.option("--level", type=click.Choice(LEVELS), default="member", show_default=True,
              help="Trust level the device gets when it joins.")
@click.option("--ttl", type=float, default=24.0, show_default=True, metavar="HOURS",
              help="How long the invite stays valid.")
@click.option("--out", "out_png", type=click.Path(dir_okay=False), metavar="PNG",
              help="Where to save the QR code (default: <community state dir>/invites/<id>.png, 0600).")
@click.option("--name", metavar="DISPLAY_NAME", help="A name for the invited device in the log.")
@click.option("--json", "as_json", is_flag=True, help="Print {invite, png, invitee_node_id, expires_at, level, ...}.")
@click.pass_obj
def create_cmd(state: "CliState", node_id: str, level: str, ttl: float, out_png: str | None,
               name: str | None, as_json: bool) -> None:
    """Invite one device (by its node id) into this node's community.

    The node must be running. Prints the invite text and its QR code and saves the code
    as a PNG. Inviting the same device again while its invite is pending re-issues it.
    Exit 0 on success, 3 if no node runs, 4 if this node may not invite at that level.
    """
    boundary.run(lambda: create(state, node_id=node_id, level=level, ttl=ttl, out_png=out_png, name=name),
                 as_json=as_json, state=state)


@cli.command("redeem")
@click.argument("text_or_path", metavar="TEXT_OR_PATH")
@click.option("--yes", "-y", is_flag=True, help="Join without asking (after the checks).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.pass_obj
def redeem_cmd(state: "CliState", text_or_path: str, yes: bool, as_json: bool) -> None:
    """Join the community of an invite made for this device.

    TEXT_OR_PATH is the invite text (hearthnet://v1/...), a file holding it, or a PNG of
    its QR code. The node must not be running yet (it has no community). Exit 0 when
    joined (or already a member), 1 if the inviter's node cannot be reached or the log
    cannot be fetched, 2 if you decline, 4 if the invite is invalid, expired or for
    another device.
    """
    out = Output()
    boundary.run(lambda: redeem(state, text=text_or_path, yes=yes, out=out), as_json=as_json, state=state, out=out)
