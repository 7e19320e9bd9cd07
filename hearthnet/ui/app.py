"""The Gradio app: a header with the node and its state, one tab per module in
hearthnet/ui/tabs/, served on ui.host:ui.port. Offline by construction: analytics and
version checks off, system fonts only (theme.py), no share link, no SSR node server,
every script and style from Gradio's own package on this machine.

LAN access (`[ui] lan_access = true`) binds every interface and asks for the owner's
pairing code (a fresh random code per start, in `<run dir>/ui.pairing`, 0600); without
it the UI binds loopback only, whatever `ui.host` says, so it is never anonymous on the LAN."""
from __future__ import annotations

import hmac
import logging
import os
import secrets
from pathlib import Path
from typing import TYPE_CHECKING, Any

# Before gradio is imported: it reads these at import time.
OFFLINE_ENV = {"GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1", "HF_HUB_DISABLE_TELEMETRY": "1",
               "DO_NOT_TRACK": "1", "GRADIO_SSR_MODE": "False", "GRADIO_MCP_SERVER": "False"}
for _k, _v in OFFLINE_ENV.items():
    os.environ[_k] = _v

import gradio as gr  # noqa: E402

from hearthnet.ui import theme  # noqa: E402
from hearthnet.ui.client import UiClient, UiError  # noqa: E402
from hearthnet.ui.live import LiveWatch  # noqa: E402
from hearthnet.ui.tabs import ask, chat, emergency, files, market, mesh, settings  # noqa: E402
from hearthnet.ui.tabs.common import MAX_UPLOAD_BYTES, esc  # noqa: E402

if TYPE_CHECKING:
    from hearthnet.config import Config

log = logging.getLogger("hearthnet.ui")
LOOPBACK = "127.0.0.1"


def build_app(client: UiClient, cfg: "Config", work_dir: Path, pairing_note: str = "",
              watch: LiveWatch | None = None) -> gr.Blocks:
    with gr.Blocks(title="HearthNet", analytics_enabled=False) as app:
        header = gr.HTML(elem_id="hn-header", elem_classes=["hn-header"])
        loaders: dict[str, Any] = {}
        with gr.Tabs(elem_id="hn-tabs"):
            with gr.Tab("Ask", id="ask"):
                ask.build(client)
            with gr.Tab("Chat", id="chat") as t:
                loaders["chat"] = wire(app, t, chat.build(client))
            with gr.Tab("Market", id="market") as t:
                loaders["market"] = wire(app, t, market.build(client))
            with gr.Tab("Files", id="files") as t:
                wire(app, t, files.build(client, work_dir))
            with gr.Tab("Emergency", id="emergency") as t:
                loaders["emergency"] = wire(app, t, emergency.build(client))
            with gr.Tab("Mesh", id="mesh") as t:
                loaders["mesh"] = wire(app, t, mesh.build(client))
            with gr.Tab("Settings", id="settings"):
                settings.build(client, cfg, work_dir, pairing_note)
        app.load(lambda: render_header(client, cfg), None, [header])
        gr.on([gr.Timer(10).tick], lambda: render_header(client, cfg), None, [header])
        if watch is not None:
            live_refresh(watch, loaders)
    return app


def live_refresh(watch: LiveWatch, loaders: dict[str, Any]) -> None:
    """A 1 s timer that re-renders only the tabs whose events the live feed saw since this
    page last looked (per page: a gr.State of the counts); the rest are skipped."""
    seen = gr.State({})
    groups = list(loaders)
    inputs = [seen] + [c for g in groups for c in (loaders[g][1] or [])]
    outputs = [seen] + [c for g in groups for c in loaders[g][2]]

    def tick(last: dict[str, int], *values: Any) -> list[Any]:
        now = watch.snapshot()
        out: list[Any] = [now]
        args = list(values)
        for g in groups:
            fn, ins, outs = loaders[g]
            mine = [args.pop(0) for _ in (ins or [])]
            if now.get(g, 0) != last.get(g, 0):
                out.extend(fn(*mine))
            else:
                out.extend(gr.skip() for _ in outs)
        return out

    gr.Timer(1).tick(tick, inputs, outputs, show_progress="hidden")


def wire(app: gr.Blocks, tab: gr.Tab, loader: Any) -> Any:
    """Fill a tab when the page loads and each time it is selected."""
    fn, inputs, outputs = loader
    app.load(fn, inputs, outputs)
    tab.select(fn, inputs, outputs)
    return loader


def render_header(client: UiClient, cfg: "Config") -> str:
    """Community, this node's name, and a status pill: the detector's mode when it runs,
    else whether the node answers and how many peers it sees."""
    try:
        st = client.status()
    except UiError as exc:
        return f"<h1>HearthNet</h1><p>Problem: {esc(exc.message)}</p>"
    community = (st.get("community") or {}).get("name") or ""
    peers = len(st.get("peers") or [])
    mode = ""
    if "emergency.status" in client.capabilities():
        try:
            mode = str(client.call("emergency.status").get("mode") or "")
        except UiError:
            mode = ""
    pill = {"offline": "OFFLINE — local services active", "degraded": "limited connection",
            "online": "online"}.get(mode, "node running")
    name = (st.get("node") or {}).get("display_name") or cfg.node.display_name or ""  # live: renames show
    return (f"<h1>HearthNet · {esc(community)}</h1><p>{esc(name)} · <b class=\"hn-mode-{esc(mode or 'up')}\">"
            f"{esc(pill)}</b> · "
            f"{peers} peer{'s' if peers != 1 else ''} reachable</p>")


def pairing_code(run_dir: Path) -> str:
    """A fresh code per start, kept in the run dir (0600) for the owner to read."""
    code = "-".join(secrets.token_hex(2) for _ in range(3))
    path = run_dir / "ui.pairing"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(code + "\n")
    return code


def checker(code: str) -> Any:
    def check(_user: str, password: str) -> bool:
        return hmac.compare_digest(str(password).strip().encode(), code.encode())

    return check


def launch_options(cfg: "Config", work_dir: Path) -> dict[str, Any]:
    """gr.Blocks.launch keyword arguments for this node's [ui] config."""
    opts: dict[str, Any] = {
        "server_name": LOOPBACK, "server_port": cfg.ui.port, "share": False, "inbrowser": False,
        "prevent_thread_lock": False, "show_error": False, "quiet": True, "ssr_mode": False,
        "mcp_server": False, "enable_monitoring": False, "max_file_size": MAX_UPLOAD_BYTES,
        "allowed_paths": [str(work_dir)], "theme": theme.hearth_theme(), "css": theme.CSS,
        "footer_links": [],
    }
    if cfg.ui.lan_access:
        code = pairing_code(cfg.paths.run_dir)
        opts["server_name"] = cfg.ui.host if cfg.ui.host not in ("127.0.0.1", "localhost", "::1") else "0.0.0.0"
        opts["auth"] = checker(code)
        opts["auth_message"] = "HearthNet: enter the owner's pairing code (any user name)."
    elif cfg.ui.host not in (LOOPBACK, "localhost"):
        log.warning("ui.host is %s but [ui] lan_access is false: serving on %s only", cfg.ui.host, LOOPBACK)
    return opts


def pairing_note(cfg: "Config") -> str:
    if not cfg.ui.lan_access:
        return ("LAN access is off: this page is reachable from this computer only. "
                "Set `lan_access = true` under `[ui]` to open it to your network behind a pairing code.")
    return (f"LAN access is on: other devices log in with the pairing code in "
            f"`{cfg.paths.run_dir / 'ui.pairing'}` (new at every start).")


def serve(cfg: "Config") -> None:
    """The worker's main loop: build, then serve until the process is stopped."""
    from hearthnet.localapi import LocalApi

    work_dir = cfg.paths.run_dir / "ui"
    work_dir.mkdir(mode=0o700, exist_ok=True)
    os.environ["GRADIO_TEMP_DIR"] = str(work_dir / "uploads")
    def local_api() -> LocalApi:
        return LocalApi("localhost", 0, cfg.paths.api_token_file, socket_path=str(cfg.paths.api_socket))

    client = UiClient(local_api())
    watch = LiveWatch(local_api).start()
    opts = launch_options(cfg, work_dir)
    app = build_app(client, cfg, work_dir, pairing_note(cfg), watch)
    log.info("UI on http://%s:%s", opts["server_name"], cfg.ui.port)
    app.queue(default_concurrency_limit=8).launch(**opts)
