from __future__ import annotations

import base64
import io

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
