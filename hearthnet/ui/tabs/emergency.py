"""Emergency: the detector's state (emergency.status, when that worker runs) and the
signed alerts (alert.list) with their roll-up, and acknowledging one (alert.ack). Either
service may be absent on this node: the tab then says so and how to enable it."""
from __future__ import annotations

from typing import Any

import gradio as gr

from hearthnet.ui.tabs.common import Loader
from hearthnet.ui.client import UiClient, UiError
from hearthnet.ui.tabs.common import esc, ok, problem, table

ACK_STATUSES = ["ok", "need_help", "other"]


def build(client: UiClient) -> "Loader":
    state = gr.Markdown(elem_id="emergency-state")
    alerts = gr.HTML(elem_id="emergency-alerts")
    notice = gr.Markdown(elem_id="emergency-notice")
    with gr.Row():
        event_id = gr.Textbox(label="Alert id", scale=3, elem_id="emergency-alert-id")
        status = gr.Radio(ACK_STATUSES, value="ok", label="My status", scale=2, elem_id="emergency-ack-status")
    note = gr.Textbox(label="Note (optional)", elem_id="emergency-note")
    ack = gr.Button("Acknowledge", variant="primary", elem_id="emergency-ack")
    refresh = gr.Button("Refresh", size="sm", elem_id="emergency-refresh")

    def load() -> tuple[str, str]:
        return render_state(client), render_alerts(client)

    refresh.click(load, None, [state, alerts])
    ack.click(lambda e, s, n: acknowledge(client, e, s, n), [event_id, status, note], [notice, alerts])
    gr.on([gr.Timer(5).tick], load, None, [state, alerts])
    return load, None, [state, alerts]


def render_state(client: UiClient) -> str:
    missing = client.missing("emergency.status")
    if missing:
        return missing
    try:
        st = client.call("emergency.status")
    except UiError as exc:
        return problem(exc.message)
    mode = str(st.get("mode") or "unknown")
    banner = {"online": "Internet online", "degraded": "LIMITED CONNECTION · local services active",
              "offline": "INTERNET OFFLINE — LOCAL ACTIVE"}.get(mode, f"Mode: {mode}")
    since = f" · since {st['since']}" if st.get("since") else ""
    return f"### {banner}{since}"


def render_alerts(client: UiClient) -> str:
    missing = client.missing("alert.list")
    if missing:
        return f"<p>{esc(missing.replace('**', ''))}</p>"
    try:
        rows = client.call("alert.list").get("alerts") or []
    except UiError as exc:
        return f"<p>{esc(problem(exc.message))}</p>"
    return table(["id", "alert", "severity", "roll-up", "my answer"], [alert_row(a) for a in rows
                                                                       if isinstance(a, dict)], "No alerts.")


def alert_row(a: dict[str, Any]) -> tuple[str, ...]:
    r = a.get("rollup") or {}
    exercise = ' <span class="hn-exercise">EXERCISE</span>' if a.get("exercise") else ""
    inactive = "" if a.get("active", True) else " <em>(ended)</em>"
    rollup = (f"ok {esc(_count(r.get('ok')))} · need help {esc(_count(r.get('need_help')))} · other "
              f"{esc(_count(r.get('other')))} · <b>not heard from {esc(_count(r.get('not_heard')))}</b>"
              f"{_names(r.get('need_help'), 'need help')}{_names(r.get('not_heard'), 'not heard from')}")
    mine = a.get("my_ack")
    mine_text = esc(mine.get("status") if isinstance(mine, dict) else mine or "—")
    return (f"<code>{esc(a.get('event_id'))}</code>", f"<b>{esc(a.get('headline'))}</b>{exercise}{inactive}",
            esc(a.get("severity")), rollup, mine_text)


def _names(value: Any, label: str) -> str:
    """The people behind a count that asks for a door knock (alert.list gives lists)."""
    if not isinstance(value, list) or not value:
        return ""
    names = [str(p.get("name") or str(p.get("node_id", ""))[:16]) for p in value if isinstance(p, dict)]
    return f"<br><small>{esc(label)}: {esc(', '.join(names))}</small>" if names else ""


def _count(value: Any) -> Any:
    return len(value) if isinstance(value, list) else (value or 0)


def acknowledge(client: UiClient, event_id: str, status: str, note: str) -> tuple[str, str]:
    event_id = (event_id or "").strip()
    if not event_id:
        return problem("Give the alert's id first."), gr.update()
    if status not in ACK_STATUSES:
        return problem("Choose ok, need_help or other."), gr.update()
    missing = client.missing("alert.ack")
    if missing:
        return missing, gr.update()
    inp: dict[str, Any] = {"event_id": event_id, "status": status}
    if (note or "").strip():
        inp["note"] = note.strip()[:500]
    try:
        client.call("alert.ack", inp)
    except UiError as exc:
        return problem(exc.message), gr.update()
    return ok("Acknowledged."), render_alerts(client)
