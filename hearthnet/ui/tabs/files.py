"""Files: upload (file.add, with Gradio's upload progress), the store (file.ls), pin
(file.pin) and download (file.get into a private temp dir, served by Gradio)."""
from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import gradio as gr

from hearthnet.ui.tabs.common import Loader
from hearthnet.ui.client import UiClient, UiError
from hearthnet.ui.tabs.chat import add_upload
from hearthnet.ui.tabs.common import esc, ok, problem, table


def build(client: UiClient, download_dir: Path) -> "Loader":
    notice = gr.Markdown(elem_id="files-notice")  # what the last action did
    status = gr.Markdown(elem_id="files-status")  # what a timed refresh found wrong
    upload = gr.File(label="Upload a file to the store", elem_id="files-upload")
    add = gr.Button("Add to store", variant="primary", elem_id="files-add")
    listing = gr.HTML(elem_id="files-list")
    with gr.Row():
        cid = gr.Textbox(label="CID (or 4+ hex digits of one)", scale=3, elem_id="files-cid")
        pin = gr.Button("Pin", scale=1, elem_id="files-pin")
        get = gr.Button("Download", scale=1, elem_id="files-get")
    out = gr.File(label="Downloaded", interactive=False, elem_id="files-out")

    add.click(lambda f: add_file(client, f), [upload], [notice, listing, upload])
    pin.click(lambda c: pin_file(client, c), [cid], [notice, listing])
    get.click(lambda c: fetch_file(client, c, download_dir), [cid], [notice, out]).then(
        lambda: list_files(client)[0], None, [listing])
    # Timed and live refreshes write `status`, never `notice`: a tick must not wipe "Added".
    gr.on([gr.Timer(15).tick], lambda: list_files(client), None, [listing, status])
    return lambda: list_files(client), None, [listing, status]


def list_files(client: UiClient) -> tuple[str, str]:
    missing = client.missing("file.ls")
    if missing:
        return "", missing
    try:
        doc = client.call("file.ls")
    except UiError as exc:
        return "", problem(exc.message)
    rows = [(f"<code>{esc(f.get('cid'))}</code>", esc(f.get("filename")), esc(f.get("size_bytes")),
             "pinned" if f.get("pinned") else "", "yes" if f.get("complete") else "partial")
            for f in doc.get("files") or [] if isinstance(f, dict)]
    return table(["CID", "name", "bytes", "pinned", "complete"], rows, "The store is empty."), ""


def add_file(client: UiClient, upload: Any) -> tuple[str, str, Any]:
    if not upload:
        return problem("Choose a file first."), gr.update(), None
    try:
        cid, name = add_upload(client, upload)
    except UiError as exc:
        return problem(exc.message), gr.update(), None
    listing, _ = list_files(client)
    return ok(f"Added {name}: `{cid}`"), listing, None


def pin_file(client: UiClient, cid: str) -> tuple[str, str]:
    cid = (cid or "").strip()
    if not cid:
        return problem("Give a CID first."), gr.update()
    try:
        client.call("file.pin", {"cid": cid})
    except UiError as exc:
        return problem(exc.message), gr.update()
    listing, _ = list_files(client)
    return ok("Pinned."), listing


def fetch_file(client: UiClient, cid: str, download_dir: Path) -> tuple[str, Any]:
    cid = (cid or "").strip()
    if not cid:
        return problem("Give a CID first."), None
    target = Path(tempfile.mkdtemp(dir=download_dir))
    done: dict = {}
    try:
        for event, data in client.stream("file.get", {"cid": cid, "out": str(target)}):
            if event == "done":
                done = data
    except UiError as exc:
        return problem(exc.message), None
    written = done.get("out")
    if not written or not Path(written).is_file():
        return problem("The file was fetched but not written out."), None
    return ok(f"Fetched {Path(written).name}."), written
