"""Settings: this node's name (rename it here), its id, an LLM backend snippet to copy
into config.toml, inviting a device (community.invite through the onboarding code, with
its QR code) and joining another community by a pasted invite: "Check invite" shows the
preview, "Join" (offered only after a good check, and only to a node alone in its own
community) switches the node and restarts it. Rename and join are local API routes
(`/api/v1/settings/name`, `/api/v1/community/join`, hearthnet/gateway/node_settings.py)."""
from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import gradio as gr

from hearthnet.config import LLM_BACKEND_SNIPPET
from hearthnet.errors import HearthNetError
from hearthnet.ui.client import UiClient, UiError, describe
from hearthnet.ui.tabs.common import esc, ok, problem

if TYPE_CHECKING:
    from hearthnet.config import Config

NAME_ROUTE = "/api/v1/settings/name"
JOIN_ROUTE = "/api/v1/community/join"
LEVELS = ["member", "trusted"]


def build(client: UiClient, cfg: "Config", work_dir: Path, pairing_note: str) -> None:
    node_id = own_node_id(cfg)
    # Callables: evaluated at each page load, so a rename shows after a reload too.
    identity = gr.Markdown(lambda: identity_text(current_name(client, cfg), node_id), elem_id="settings-identity")
    with gr.Row():
        name = gr.Textbox(value=lambda: current_name(client, cfg), label="Name of this node", scale=3,
                          max_length=200, elem_id="settings-name")
        rename_btn = gr.Button("Rename", scale=1, elem_id="settings-rename")
    rename_notice = gr.Markdown(elem_id="settings-rename-notice")
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
    gr.Markdown("A node alone in its own community (as `hearthnet init` makes it) can join a "
                "neighbourhood here: paste the invite a member made for this node's id, check it, join. "
                "The node then restarts; its old community's data stays on disk.")
    pasted = gr.Textbox(label="Paste an invite", lines=2, elem_id="settings-join-text")
    check = gr.Button("Check invite", elem_id="settings-join")
    join_notice = gr.Markdown(elem_id="settings-join-notice")
    checked = gr.State("")  # the invite the last good check was about
    join_btn = gr.Button("Join", variant="primary", visible=False, elem_id="settings-join-confirm")

    rename_btn.click(lambda n: rename(client, node_id, n), [name], [rename_notice, identity])
    make.click(lambda i, lv, t: create(client, cfg, work_dir, i, lv, t), [invitee, level, ttl],
               [invite_notice, invite_text, qr])
    check.click(lambda text: check_join(client, cfg, text), [pasted], [join_notice, join_btn, checked])
    pasted.input(lambda: (gr.update(visible=False), ""), None, [join_btn, checked])
    join_btn.click(lambda text: join(client, text), [checked], [join_notice, join_btn, checked])


def current_name(client: UiClient, cfg: "Config") -> str:
    """The name the node uses now (it may have been renamed since this worker started)."""
    try:
        return str((client.status().get("node") or {}).get("display_name") or cfg.node.display_name)
    except UiError:
        return cfg.node.display_name


def identity_text(name: str, node_id: str) -> str:
    return f"**This node:** {esc(name) or '(no name)'} · `{node_id}`"


def rename(client: UiClient, node_id: str, name: str) -> tuple[str, Any]:
    """Rename through the local API; a bad name is refused here or by the node, shown
    plainly."""
    name = (name or "").strip()
    if not name:
        return problem("Type the new name first."), gr.skip()
    try:
        done = client.post(NAME_ROUTE, {"display_name": name})
    except UiError as exc:
        return problem(f"Not renamed: {exc.message}"), gr.skip()
    new = str(done.get("display_name") or name)
    again = " and announced on the LAN again" if done.get("restarted") else ""
    return ok(f"Renamed to **{esc(new)}**: saved in config.toml{again}."), identity_text(new, node_id)


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


def check_join(client: UiClient, cfg: "Config", text: str) -> tuple[str, Any, str]:
    """Check a pasted invite: locally first (a malformed or foreign one sends nothing),
    then the node's preview (it reaches the inviter). Offers "Join" only when it may."""
    from hearthnet.onboarding.invite import check_invite, decode_invite

    hidden = gr.update(visible=False)
    text = (text or "").strip()
    if not text:
        return problem("Paste an invite first."), hidden, ""
    try:
        blob = decode_invite(text)
        check_invite(blob, own_node_id(cfg))
    except HearthNetError as exc:
        return problem(f"This invite cannot be used: {describe(exc)}"), hidden, ""
    try:
        doc = client.post(JOIN_ROUTE, {"invite": text, "confirm": False})
    except UiError as exc:
        return problem(f"This invite cannot be used: {exc.message}"), hidden, ""
    p = doc.get("preview") or {}
    what = (f"**{esc(p.get('community_name'))}** (`{esc(p.get('community_id_short'))}`, "
            f"{p.get('members')} member(s)), invited by {esc(p.get('inviter_display_name') or p.get('inviter_node_id_short'))} "
            f"as {esc(p.get('level'))}, valid until {esc(p.get('expires_at'))}")
    if p.get("same_community"):
        return ok(f"This node is already in {what}."), hidden, ""
    if not doc.get("can_join"):
        return problem(f"A valid invite to {what}, but this node cannot switch: {esc(doc.get('why_not'))}. "
                       f"To leave a shared community use `hearthnet erase` first (it deletes this node's "
                       f"data), or use another device."), hidden, ""
    return (ok(f"A valid invite to {what}. **Join** leaves this node's own community (its data stays on "
               f"disk) and restarts the node."), gr.update(visible=True), text)


def join(client: UiClient, text: str) -> tuple[str, Any, str]:
    hidden = gr.update(visible=False)
    if not (text or "").strip():
        return problem("Check an invite first."), hidden, ""
    try:
        doc = client.post(JOIN_ROUTE, {"invite": text, "confirm": True})
    except UiError as exc:
        return problem(f"Not joined: {exc.message}"), hidden, ""
    j = doc.get("joined") or {}
    if not doc.get("restarting"):
        return ok(str(j.get("message") or "Nothing to do.")), hidden, ""
    old = doc.get("old_community") or {}
    return (ok(f"Joined **{esc(j.get('community_name'))}** as {esc(j.get('level'))}; the node is restarting, "
               f"reload this page in a few seconds. The old community's data stays in "
               f"`{esc(old.get('state_dir'))}`."), hidden, "")
