"""The UI's logic without a browser: a fake local API stands in for the node, so these
check what each tab sends (and that bad input sends nothing), the offline launch options,
the LAN login, the program `hearthnet run` starts, and the topology picture."""
from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("gradio", reason="the ui extra (gradio) is not installed")

from hearthnet.config import load_config  # noqa: E402
from hearthnet.errors import HearthNetError  # noqa: E402
from hearthnet.supervise import programs_for, render_supervisor_conf  # noqa: E402
from hearthnet.ui import app, topology  # noqa: E402
from hearthnet.ui.client import UiClient, UiError  # noqa: E402
from hearthnet.ui.tabs import ask, chat, emergency, market, settings  # noqa: E402
from hearthnet.ui.tabs import common  # noqa: E402
from tests.unit.xdg_fixture import isolated_xdg  # noqa: F401,E402

PEER = "ed25519:" + "b" * 52


class FakeApi:
    """Records calls; answers from `outputs` by capability name."""

    def __init__(self, caps: set[str], outputs: dict[str, Any] | None = None) -> None:
        self.caps = caps
        self.outputs = outputs or {}
        self.calls: list[tuple[str, dict]] = []

    def get(self, path: str, query: Any = None) -> dict[str, Any]:
        if path == "/api/v1/capabilities":
            return {"capabilities": [{"name": c} for c in self.caps]}
        return {"traces": []}

    def output(self, name: str, inp: dict, version: str = "1.0") -> dict[str, Any]:
        self.calls.append((name, inp))
        out = self.outputs.get(name, {})
        if isinstance(out, HearthNetError):
            raise out
        return out

    def call(self, name: str, version: str, body: dict, *, stream: bool = False) -> Any:
        self.calls.append((name, body["input"]))
        return iter(self.outputs.get(name, []))

    def post(self, path: str, body: dict) -> dict[str, Any]:
        self.calls.append((path, body))
        out = self.outputs.get(path, {})
        if isinstance(out, HearthNetError):
            raise out
        return out(body) if callable(out) else out


def client(caps: set[str], **outputs: Any) -> tuple[UiClient, FakeApi]:
    api = FakeApi(caps, {k.replace("_", "."): v for k, v in outputs.items()})
    return UiClient(api), api  # type: ignore[arg-type]


def _cfg(tmp_path: Path, text: str = "", **env: str):
    path = tmp_path / "config.toml"
    path.write_text(text)
    return load_config(path, env=env)


# ---- bad input sends nothing --------------------------------------------------------

def test_empty_chat_message_is_refused_before_anything_is_sent() -> None:
    c, api = client({"chat.send"})
    msg, sent = chat.send_message(c, PEER, "   ", None)
    assert not sent and "empty" in msg and api.calls == []
    msg, sent = chat.send_message(c, None, "hi", None)
    assert not sent and "Choose" in msg and api.calls == []
    msg, sent = chat.send_message(c, PEER, "x" * (16 * 1024 + 1), None)
    assert not sent and "KiB" in msg and api.calls == []


def test_chat_send_goes_out_with_the_recipient_and_a_client_id() -> None:
    c, api = client({"chat.send"}, chat_send={"event_id": "e1", "delivered": "direct"})
    msg, sent = chat.send_message(c, PEER, " hello ", None)
    assert sent and "direct" in msg
    (name, inp), = api.calls
    assert name == "chat.send" and inp["recipient"] == PEER and inp["body"] == "hello" and inp["client_id"]


def test_an_over_size_upload_is_refused_without_calling_file_add(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(common, "MAX_UPLOAD_BYTES", 10)
    monkeypatch.setattr(chat, "MAX_UPLOAD_BYTES", 10)
    big = tmp_path / "big.bin"
    big.write_bytes(b"x" * 11)
    c, api = client({"chat.send", "file.add"})
    msg, sent = chat.send_message(c, PEER, "see file", str(big))
    assert not sent and "at most" in msg and api.calls == []


def test_a_malformed_invite_is_a_clear_message_and_sends_nothing(tmp_path) -> None:
    cfg = _cfg(tmp_path)
    c, api = client(set())
    for text in ("", "hello", "hearthnet-invite://AAAA", "ed25519:" + "a" * 52):
        msg, button, checked = settings.check_join(c, cfg, text)
        assert msg.startswith("**Problem:**") and "Traceback" not in msg, (text, msg)
        assert button["visible"] is False and checked == ""
    assert api.calls == []


def _invite_for_me(cfg) -> str:
    from hearthnet.identity import keys
    from hearthnet.onboarding.invite import encode_invite, sign_invite

    me = keys.load_or_generate(cfg.identity.keys_dir)
    founder = keys.generate()
    return encode_invite(sign_invite(
        founder, community_id=founder.node_id_full, community_name="Maple Street",
        invitee_node_id=me.node_id_full, initial_level="member", expires_at="2099-01-01T00:00:00Z",
        bootstrap_endpoints=[{"transport": "https", "host": "127.0.0.1", "port": 7080}]))


PREVIEW = {"community_name": "Maple Street", "community_id_short": "abcd", "members": 3,
           "inviter_display_name": "alice", "level": "member", "expires_at": "2099-01-01T00:00:00Z",
           "same_community": False}


def test_a_good_invite_is_previewed_then_joined(tmp_path) -> None:
    cfg = _cfg(tmp_path)
    text = _invite_for_me(cfg)
    c, api = client(set())
    api.outputs[settings.JOIN_ROUTE] = lambda body: (
        {"ok": True, "joined": {"community_name": "Maple Street", "level": "member"}, "restarting": True,
         "old_community": {"state_dir": "/data/communities/x"}} if body["confirm"]
        else {"ok": True, "preview": PREVIEW, "can_join": True, "why_not": None})
    msg, button, checked = settings.check_join(c, cfg, text)
    assert "Maple Street" in msg and "alice" in msg and button["visible"] is True and checked == text
    assert api.calls == [(settings.JOIN_ROUTE, {"invite": text, "confirm": False})]
    msg, button, checked = settings.join(c, checked)
    assert api.calls[-1] == (settings.JOIN_ROUTE, {"invite": text, "confirm": True})
    assert "Joined **Maple Street** as member" in msg and "reload this page" in msg
    assert "/data/communities/x" in msg and button["visible"] is False


def test_a_node_that_may_not_switch_is_told_why_and_offered_no_join(tmp_path) -> None:
    cfg = _cfg(tmp_path)
    c, api = client(set())
    api.outputs[settings.JOIN_ROUTE] = {"ok": True, "preview": PREVIEW, "can_join": False,
                                        "why_not": "this node's community has 2 other member(s)"}
    msg, button, _ = settings.check_join(c, cfg, _invite_for_me(cfg))
    assert msg.startswith("**Problem:**") and "2 other member" in msg and "hearthnet erase" in msg
    assert button["visible"] is False
    api.outputs[settings.JOIN_ROUTE] = HearthNetError("other_community", "not alone")
    msg, _, _ = settings.join(c, "hearthnet://v1/x")
    assert msg.startswith("**Problem:** Not joined") and "other_community" in msg
    assert settings.join(c, "")[0].startswith("**Problem:**")


def test_rename_sends_the_name_and_shows_it_and_refuses_an_empty_one() -> None:
    c, api = client(set())
    msg, identity = settings.rename(c, "ed25519:me", "   ")
    assert msg.startswith("**Problem:**") and api.calls == []
    api.outputs[settings.NAME_ROUTE] = {"ok": True, "display_name": "Mill St", "restarted": ["discovery"]}
    msg, identity = settings.rename(c, "ed25519:me", " Mill St ")
    assert api.calls == [(settings.NAME_ROUTE, {"display_name": "Mill St"})]
    assert "Renamed to **Mill St**" in msg and "Mill St" in identity
    api.outputs[settings.NAME_ROUTE] = HearthNetError("bad_request", "the display name must be 1-64 characters")
    msg, _ = settings.rename(c, "ed25519:me", "x" * 80)
    assert msg.startswith("**Problem:** Not renamed") and "1-64" in msg


def test_an_empty_question_and_a_post_without_title_send_nothing() -> None:
    c, api = client({"rag.ask", "market.post"})
    (notice, answer, _), = list(ask.ask(c, "  ", ""))
    assert "question" in notice and answer == ""
    notice, *_ = market.new_post(c, "offer", " ", "body", "")
    assert "title" in notice
    assert api.calls == []


def test_a_capability_error_is_shown_not_raised() -> None:
    c, _ = client({"market.post", "market.list"},
                  market_post=HearthNetError("bad_request", "ttl_seconds over max_ttl_seconds"))
    notice, *_ = market.new_post(c, "offer", "Generator", "", "power")
    assert "bad_request" in notice and "ttl_seconds" in notice


# ---- a service that is not running -----------------------------------------------------

def test_emergency_tab_says_how_to_enable_absent_services() -> None:
    c, api = client(set())
    assert "Not running" in emergency.render_state(c) and "enable" in emergency.render_state(c)
    assert "not served" in emergency.render_alerts(c)
    notice, _ = emergency.acknowledge(c, "01ALERT", "ok", "")
    assert "Not running" in notice and api.calls == []


def test_emergency_tab_shows_alerts_roll_up_and_acks() -> None:
    alert = {"event_id": "01ALERT", "headline": "Boil water", "severity": "Moderate", "status": "Actual",
             "exercise": True, "active": True, "my_ack": None,
             "rollup": {"ok": [{"node_id": "ed25519:a", "name": "ann"}, {"node_id": "ed25519:b", "name": "ben"}],
                        "need_help": [{"node_id": "ed25519:c", "name": "cem", "note": "no car"}], "other": [],
                        "not_heard": [{"node_id": f"ed25519:{n}", "name": n} for n in ("dora", "eli", "fay")]}}
    c, api = client({"emergency.status", "alert.list", "alert.ack"},
                    emergency_status={"mode": "offline", "since": "2026-12-01T12:00:00Z"},
                    alert_list={"alerts": [alert]})
    assert "OFFLINE" in emergency.render_state(c)
    html = emergency.render_alerts(c)
    assert "Boil water" in html and "EXERCISE" in html and "ok 2" in html and "need help 1" in html
    assert "not heard from 3" in html and "dora, eli, fay" in html and "need help: cem" in html  # the door-knock list
    notice, _ = emergency.acknowledge(c, "01ALERT", "need_help", "no water")
    assert notice.startswith("**OK:**")
    assert ("alert.ack", {"event_id": "01ALERT", "status": "need_help", "note": "no water"}) in api.calls


def test_missing_names_the_capability_and_how_to_enable() -> None:
    c, _ = client({"chat.send"})
    assert c.missing("chat.send") is None
    text = c.missing("market.list")
    assert "market.list" in text and "[market] enabled" in text


# ---- launch: offline, loopback unless LAN access, never anonymous on the LAN ----------

def test_loopback_only_unless_lan_access(tmp_path) -> None:
    cfg = _cfg(tmp_path, '[ui]\nhost = "0.0.0.0"\n')
    opts = app.launch_options(cfg, tmp_path)
    assert opts["server_name"] == "127.0.0.1" and "auth" not in opts
    assert opts["share"] is False and opts["ssr_mode"] is False and opts["footer_links"] == []
    assert os.environ["GRADIO_ANALYTICS_ENABLED"] == "False"


def test_lan_access_needs_the_pairing_code(tmp_path) -> None:
    cfg = _cfg(tmp_path, "[ui]\nlan_access = true\n")
    cfg.paths.run_dir.mkdir(parents=True, exist_ok=True)
    opts = app.launch_options(cfg, tmp_path)
    assert opts["server_name"] == "0.0.0.0"
    code_file = cfg.paths.run_dir / "ui.pairing"
    assert stat.S_IMODE(code_file.stat().st_mode) == 0o600
    code = code_file.read_text().strip()
    assert opts["auth"]("anyone", code) and not opts["auth"]("anyone", "") and not opts["auth"]("x", code + "0")


def test_theme_uses_no_web_fonts() -> None:
    t = app.theme.hearth_theme()
    assert not any(type(f).__name__ == "GoogleFont" for f in (*t._font, *t._font_mono))
    assert "fonts.googleapis" not in app.theme.CSS


def test_ui_program_is_left_out_with_no_ui_or_disabled(tmp_path) -> None:
    cfg = _cfg(tmp_path)
    assert "ui" in [p.name for p in programs_for(cfg, no_ui=False)]
    assert "ui" not in [p.name for p in programs_for(cfg, no_ui=True)]
    assert "ui" not in [p.name for p in programs_for(_cfg(tmp_path, "[ui]\nenabled = false\n"), no_ui=False)]
    conf = render_supervisor_conf(cfg, programs_for(cfg, no_ui=False), debug=False)
    assert "[program:ui]" in conf and "-m workers.ui" in conf
    assert "[program:ui]" not in render_supervisor_conf(cfg, programs_for(cfg, no_ui=True), debug=False)


def test_ui_port_from_the_environment(tmp_path) -> None:
    assert _cfg(tmp_path, HEARTHNET_UI_PORT="7999").ui.port == 7999


# ---- topology -----------------------------------------------------------------------------

def test_topology_edges_and_svg_from_traces() -> None:
    traces = [{"capability": "llm.chat", "caller": "", "route": "remote:" + PEER},
              {"capability": "llm.chat", "caller": "", "route": "remote:" + PEER},
              {"capability": "chat.deliver", "caller": PEER, "route": "local:chat"},
              {"capability": "market.list", "caller": "", "route": "local:market"}]
    edges = topology.edges_from_traces(traces)
    assert edges[("this node", "bbbbbbbbbb", "llm")] == 2
    assert edges[("bbbbbbbbbb", "this node", "chat")] == 1
    assert edges[("this node", "this node", "market")] == 1
    svg = topology.render_svg(edges, {"bbbbbbbbbb": "bob <&>"})
    assert svg.startswith("<svg") and "bob &lt;&amp;&gt;" in svg and "http" not in svg.replace(
        'xmlns="http://www.w3.org/2000/svg"', "")


def test_ui_error_carries_the_code() -> None:
    c, _ = client({"market.list"}, market_list=HearthNetError("unauthorized", "no"))
    with pytest.raises(UiError) as info:
        c.call("market.list")
    assert info.value.code == "unauthorized" and "(unauthorized)" in info.value.message


def test_an_attachment_is_added_to_the_store_then_sent_by_cid(tmp_path) -> None:
    doc = tmp_path / "plan.txt"
    doc.write_text("boil water")
    cid = "blake3:" + "c" * 64
    c, api = client({"chat.send", "file.add"},
                    file_add=[("progress", {"current": 1, "total": 1}),
                              ("done", {"manifest": {"cid": cid, "filename": "plan.txt"}})],
                    chat_send={"event_id": "e2", "delivered": "queued"})
    msg, sent = chat.send_message(c, PEER, "", str(doc))
    assert sent, msg
    assert api.calls[0] == ("file.add", {"path": str(doc)})
    assert api.calls[1][0] == "chat.send" and api.calls[1][1]["attachments"] == [{"cid": cid, "name": "plan.txt"}]


def test_live_watch_counts_events_per_tab_and_the_app_builds_with_it(tmp_path) -> None:
    from hearthnet.ui.live import LiveWatch, group_of

    assert group_of("chat.message.sent") == "chat" and group_of("market.post.expired") == "market"
    assert group_of("emergency.alert.acknowledged") == "emergency" and group_of("file.cid.advertised") is None
    watch = LiveWatch(lambda: None)  # type: ignore[arg-type,return-value]
    for t in ("chat.message.sent", "chat.message.read", "market.post.created", "community.created"):
        watch.seen(t)
    assert watch.snapshot() == {"chat": 2, "market": 1}
    c, _ = client(set())
    assert app.build_app(c, _cfg(tmp_path), tmp_path, "", watch) is not None
