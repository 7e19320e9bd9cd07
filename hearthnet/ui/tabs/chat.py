"""Chat: members to write to (with unread badges from chat.unread), the thread from
chat.history, send via chat.send, attach a file (file.add of the upload, then its CID)."""
from __future__ import annotations

import os
import uuid
from typing import Any

import gradio as gr

from hearthnet.ui.tabs.common import Loader
from hearthnet.ui.client import UiClient, UiError
from hearthnet.ui.tabs.common import MAX_UPLOAD_BYTES, esc, ok, problem, short

MAX_BODY_BYTES = 16 * 1024  # chat.send's own limit: say so before sending


def build(client: UiClient) -> "Loader":
    notice = gr.Markdown(elem_id="chat-notice")  # what the last action did
    status = gr.Markdown(elem_id="chat-status")  # what a timed refresh found wrong
    with gr.Row():
        with gr.Column(scale=1, min_width=220):
            peer = gr.Radio(label="Write to", choices=[], elem_id="chat-peer")
            refresh = gr.Button("Refresh", size="sm", elem_id="chat-refresh")
        with gr.Column(scale=3):
            thread = gr.HTML(elem_id="chat-thread")
            text = gr.Textbox(label="Message", lines=2, elem_id="chat-text")
            attach = gr.File(label="Attach a file (optional)", elem_id="chat-attach")
            send = gr.Button("Send", variant="primary", elem_id="chat-send")

    def load(selected: str | None) -> tuple[Any, str, str]:
        choices, msg = peer_choices(client)
        value = selected if selected in {v for _, v in choices} else (choices[0][1] if choices else None)
        return gr.update(choices=choices, value=value), render_thread(client, value), msg

    def on_send(selected: str | None, body: str, upload: Any) -> tuple[str, str, Any, Any]:
        msg, sent = send_message(client, selected, body, upload)
        return msg, render_thread(client, selected), ("" if sent else body), (None if sent else upload)

    refresh.click(load, [peer], [peer, thread, notice])
    peer.change(lambda p: render_thread(client, p), [peer], [thread])
    send.click(on_send, [peer, text, attach], [notice, thread, text, attach])
    # Timed and live refreshes write `status`, never `notice`: a tick must not wipe "Sent".
    gr.on([gr.Timer(5).tick], load, [peer], [peer, thread, status])
    return load, [peer], [peer, thread, status]


def peer_choices(client: UiClient) -> tuple[list[tuple[str, str]], str]:
    missing = client.missing("chat.send", "community.members.list")
    if missing:
        return [], missing
    try:
        listing = client.call("community.members.list")
        members, me = listing.get("members") or [], listing.get("node_id")
        unread = {u.get("peer"): u.get("count", 0) for u in client.call("chat.unread").get("unread") or []}
    except UiError as exc:
        return [], problem(exc.message)
    out = []
    for m in members:
        node = m.get("node_id")
        if not node or node == me:
            continue
        badge = f"  ({unread[node]} unread)" if unread.get(node) else ""
        out.append((f"{m.get('display_name') or short(node)}{badge}", node))
    return out, ("" if out else "No other members yet: invite a device from the Settings tab.")


def render_thread(client: UiClient, peer: str | None) -> str:
    if not peer:
        return "<p><em>Choose someone to write to.</em></p>"
    try:
        msgs = client.call("chat.history", {"peer": peer, "limit": 100}).get("messages") or []
        names = {m.get("node_id"): m.get("display_name") or short(m.get("node_id"))
                 for m in client.call("community.members.list").get("members") or []}
        unread = [m["event_id"] for m in msgs if m.get("direction") == "in" and not m.get("read_at")]
        if unread:
            client.call("chat.read", {"event_ids": unread})
    except UiError as exc:
        return f"<p>{esc(problem(exc.message))}</p>"
    if not msgs:
        return "<p><em>No messages yet. Messages are end-to-end encrypted.</em></p>"
    rows = []
    for m in msgs:
        who = "me" if m.get("direction") == "out" else names.get(m.get("from"), short(m.get("from")))
        body = esc(m.get("body")) if m.get("decrypted", True) else "<em>(cannot decrypt)</em>"
        files = "".join(f'<br>attached: {esc(a.get("name"))} <code>{esc(a.get("cid"))}</code>'
                        for a in m.get("attachments") or [] if isinstance(a, dict))
        rows.append(f'<div class="hn-msg"><b>{esc(who)}</b> <small>{esc(m.get("created_at"))}</small><br>'
                    f'{body}{files}</div>')
    return "<small>end-to-end encrypted</small>" + "".join(rows)


def send_message(client: UiClient, peer: str | None, body: str, upload: Any) -> tuple[str, bool]:
    """(notice, sent). Checks what chat.send would refuse before anything is sent."""
    body = (body or "").strip()
    if not peer:
        return problem("Choose someone to write to first."), False
    if not body and not upload:
        return problem("The message is empty: type something or attach a file."), False
    if len(body.encode("utf-8")) > MAX_BODY_BYTES:
        return problem(f"The message is over {MAX_BODY_BYTES // 1024} KiB; send a long text as a file."), False
    attachments = []
    try:
        if upload:
            cid, name = add_upload(client, upload)
            attachments.append({"cid": cid, "name": name})
        out = client.call("chat.send", {"client_id": uuid.uuid4().hex, "recipient": peer, "body": body,
                                        "attachments": attachments})
    except UiError as exc:
        return problem(exc.message), False
    return ok(f"Sent ({out.get('delivered')})."), True


def add_upload(client: UiClient, upload: Any) -> tuple[str, str]:
    """file.add of a Gradio upload (a temp file path): (cid, file name)."""
    path = upload if isinstance(upload, str) else getattr(upload, "name", None) or str(upload)
    size = os.path.getsize(path)
    if size > MAX_UPLOAD_BYTES:
        raise UiError(f"the file is {size // (1024 * 1024)} MiB; the UI takes at most "
                      f"{MAX_UPLOAD_BYTES // (1024 * 1024)} MiB (use `hearthnet file add` for bigger ones)",
                      "capacity_exceeded")
    done: dict = {}
    for event, data in client.stream("file.add", {"path": os.path.abspath(path)}):
        if event == "done":
            done = data
    manifest = done.get("manifest") or {}
    cid = manifest.get("cid")
    if not cid:
        raise UiError("the file worker did not say which CID the file got", "bad_response")
    return str(cid), str(manifest.get("filename") or os.path.basename(path))
