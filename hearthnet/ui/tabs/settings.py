"""Settings: this node's name and id, an LLM backend snippet to copy into config.toml,
inviting a device (community.invite through the onboarding code, with its QR code) and
checking an invite pasted here (joining needs the node stopped: the tab says how)."""
from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import gradio as gr

from hearthnet.config import LLM_BACKEND_SNIPPET
from hearthnet.errors import HearthNetError
from hearthnet.ui.client import UiClient, describe
from hearthnet.ui.tabs.common import ok, problem

if TYPE_CHECKING:
    from hearthnet.config import Config

LEVELS = ["member", "trusted"]


def build(client: UiClient, cfg: "Config", work_dir: Path, pairing_note: str) -> None:
    node_id = own_node_id(cfg)
    gr.Markdown(f"**This node:** {cfg.node.display_name or '(no name)'} · `{node_id}`  \n"
                f"To rename it, set `display_name` under `[node]` in `{cfg.source or cfg.paths.config_file}` "
                f"and restart.", elem_id="settings-identity")
    if pairing_note:
        gr.Markdown(pairing_note, elem_id="settings-pairing")
    with gr.Accordion("LLM backend snippet (copy into config.toml)", open=False):
        gr.Code(LLM_BACKEND_SNIPPET, language=None, interactive=False, elem_id="settings-llm-snippet")
    gr.Markdown("### Invite a device")
    gr.Markdown("On the new device run `hearthnet id` and paste what it prints (its `hearthnet-id://…` "
                "or node id) here.")
    with gr.Row():
        invitee = gr.Textbox(label="Device id", scale=3, elem_id="settings-invitee")
        level = gr.Dropdown(LEVELS, value="member", label="Level", scale=1, elem_id="settings-level")
        ttl = gr.Number(value=24, label="Valid for (hours)", minimum=1, maximum=720, scale=1,
                        elem_id="settings-ttl")
    make = gr.Button("Create invite", variant="primary", elem_id="settings-invite")
    invite_notice = gr.Markdown(elem_id="settings-invite-notice")
    invite_text = gr.Textbox(label="Invite (give it to the device)", interactive=False,
                             elem_id="settings-invite-text", buttons=["copy"])
    qr = gr.Image(label="Invite QR code", interactive=False, type="filepath", elem_id="settings-qr")
    gr.Markdown("### Join another community")
    pasted = gr.Textbox(label="Paste an invite", lines=2, elem_id="settings-join-text")
    check = gr.Button("Check invite", elem_id="settings-join")
    join_notice = gr.Markdown(elem_id="settings-join-notice")

    make.click(lambda i, lv, t: create(client, cfg, work_dir, i, lv, t), [invitee, level, ttl],
               [invite_notice, invite_text, qr])
    check.click(lambda text: check_join(cfg, text), [pasted], [join_notice])


def own_node_id(cfg: "Config") -> str:
    from hearthnet.identity import keys

    try:
        return keys.own_node_id(cfg.identity.keys_dir)
    except (OSError, HearthNetError, ValueError):
        return "?"


def create(client: UiClient, cfg: "Config", work_dir: Path, invitee: str, level: str,
           ttl: Any) -> tuple[str, str, Any]:
    from hearthnet.onboarding.create import create_invite

    invitee = (invitee or "").strip()
    if not invitee:
        return problem("Paste the new device's id first (`hearthnet id` on that device)."), "", None
    try:
        hours = float(ttl or 24)
        png = Path(tempfile.mkdtemp(dir=work_dir)) / "invite.png"
        made = create_invite(cfg, node_id_text=invitee, level=level or "member", ttl_hours=hours,
                             png=png, api=client.api)
    except HearthNetError as exc:
        return problem(describe(exc)), "", None
    except (TypeError, ValueError):
        return problem("The validity must be a number of hours."), "", None
    what = "Re-issued the pending invite" if made.reissued else "Invite created"
    return (ok(f"{what} for {made.invitee_display_name or made.invitee_node_id[:18]} as {made.level}, "
               f"valid until {made.expires_at}. On that device run `hearthnet invite redeem '<invite>'` "
               f"(or scan the QR code)."), made.invite, str(made.png) if made.png else None)


def check_join(cfg: "Config", text: str) -> str:
    from hearthnet.onboarding.invite import check_invite, decode_invite

    text = (text or "").strip()
    if not text:
        return problem("Paste an invite first.")
    try:
        blob = decode_invite(text)
        check_invite(blob, own_node_id(cfg))
    except HearthNetError as exc:
        return problem(f"This invite cannot be used: {describe(exc)}")
    return ok(f"A valid invite to **{blob.community_name}** as {blob.initial_level}, until {blob.expires_at}. "
              f"Joining replaces this node's community: stop the node, then run "
              f"`hearthnet invite redeem '<the invite>'` and start it again.")
