from __future__ import annotations

import base64
import io
import json

import pytest

from hearthnet.cli import render


def test_short_node_id_matches_design_rule():
    pub = bytes(range(32))
    full = "ed25519:" + base64.urlsafe_b64encode(pub).decode().rstrip("=")
    b32 = base64.b32encode(pub[:10]).decode()
    assert render.short_node_id(full) == f"ed25519:{b32[:4]}-{b32[4:8]}-{b32[8:12]}-{b32[12:16]}"
    assert render.short_node_id("ed25519:ABCD-EFGH-IJKL-MNOP") == "ed25519:ABCD-EFGH-IJKL-MNOP"
    assert render.short_node_id(None) == "-"
    assert render.short_node_id("x" * 40).endswith("…")


def test_duration_and_ms():
    assert [render.duration(s) for s in (None, 5, 75, 3725, 90000)] == ["-", "5s", "1m15s", "1h02m", "1d01h"]
    assert [render.ms(v) for v in (None, 1.25, 123.4)] == ["-", "1.2", "123"]


def test_table_renders_literal_text_without_markup():
    buf = io.StringIO()
    out = render.Output(out=buf)
    out.table(["a", "b"], [["[bold]x[/bold]", None], [1, True]])
    text = buf.getvalue()
    assert "[bold]x[/bold]" in text and "-" in text and "yes" in text


def test_short_node_id_agrees_with_identity_keys():
    from hearthnet.identity import keys

    kp = keys.generate()
    assert render.short_node_id(kp.node_id_full) == kp.node_id_short


def test_a_result_gets_the_envelope_beside_its_own_keys():
    from hearthnet.cli.render import Notice

    buf = io.StringIO()
    render.emit(Notice({"event_id": "E1", "lamport": 3}, "posted"), as_json=True, out=render.Output(buf))
    assert json.loads(buf.getvalue()) == {"ok": True, "schema_version": 1, "event_id": "E1", "lamport": 3}


def test_a_result_that_reports_a_failure_has_ok_false_and_keeps_its_keys():
    class Failed:
        exit_code = 1

        def to_dict(self):
            return {"checks": [{"name": "disk", "ok": False}], "ok": False}

    buf = io.StringIO()
    render.emit(Failed(), as_json=True, out=render.Output(buf))
    assert json.loads(buf.getvalue()) == {"ok": False, "schema_version": 1, "checks": [{"name": "disk", "ok": False}]}


def test_a_list_is_no_json_result():
    with pytest.raises(TypeError):
        render.envelope([1, 2])  # type: ignore[arg-type]


def test_errors_have_the_same_envelope_with_the_hint():
    buf = io.StringIO()
    render.error("not_found", "no such post", None, as_json=True, out=render.Output(buf))
    assert json.loads(buf.getvalue()) == {"ok": False, "schema_version": 1,
                                          "error": {"code": "not_found", "message": "no such post", "hint": None}}


def test_an_error_after_json_lines_ends_the_stream_on_one_line():
    buf, err = io.StringIO(), io.StringIO()
    out = render.Output(buf, err)
    out.json_line({"event": "token", "data": {"text": "a"}})
    render.error("timeout", "the node stopped answering", "retry", as_json=True, out=out)
    lines = [json.loads(line) for line in buf.getvalue().splitlines()]
    assert lines[-1] == {"ok": False, "schema_version": 1,
                         "error": {"code": "timeout", "message": "the node stopped answering", "hint": "retry"}}
    assert len(lines) == 2
