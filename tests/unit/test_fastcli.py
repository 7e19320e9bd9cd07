"""The fast `hearthnet status` path (hearthnet.fastcli) prints byte for byte what the click
command prints for the same document, and leaves every error to the click command."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from hearthnet import fastcli
from tests.unit.cli.conftest import FakeGateway, capability, invoke, status_doc, worker
from tests.unit.unix_gateway import env, unix_gateway  # noqa: F401  (fixtures)

ROOT = Path(__file__).resolve().parents[2]
CLICK = "from hearthnet.cli import main; main()"


def _documents() -> dict[str, dict[str, Any]]:
    """Documents that reach every part of the renderer."""
    busy = status_doc(
        [worker("broker"), worker("gateway", healthy=False),
         worker("llm_00", state="FATAL", restarts=3, log_tail=["Traceback (most recent call last):", "boom"]),
         worker("discovery", note="no peers yet: a very long note that the table cuts at its first line\nline 2")],
        [capability(f"cap{i}.do") for i in range(30)] + [capability("x.remote", local=False)],
        notes=["llm: no backend configured", "rag: FATAL\n  details"])
    busy["event_log"] = {"head": "abc", "count": 12}
    busy["blob_store"] = {"blobs": 13, "complete": 12, "pinned": 3, "store_bytes": 1_200_000_000,
                          "capacity_bytes": 250 * 10**9, "free_bytes": 80 * 10**9, "fraction": 0.68}
    busy["emergency"] = {"mode": "offline", "since": "2026-12-01T12:00:00.000Z", "flap_hold": True,
                         "peers_reachable": 2, "effects": {"llm_internet_backends": "withdrawn",
                                                           "big_file_bytes": 16 << 20},
                         "applied": {"sync_interval_seconds": 30.0},
                         "probes": [{"target": "1.1.1.1", "ok": False, "deciding": True}]}
    busy["peers"] = [{"display_name": "Küche", "node_id_short": "ed25519:BBBB-BBBB-BBBB-BBBB",
                      "endpoint": {"host": "127.0.0.1", "port": 7443}, "source": "udp",
                      "last_sync": {"ok": True, "sent": 1, "received": 2}}]
    quiet = status_doc([], [])
    quiet["emergency"] = None
    quiet["peers"], quiet["discovery"] = [], {"diagnose": ["discovery started 2 s ago"]}
    return {"default": FakeGateway().status(), "busy": busy, "quiet": quiet}


@pytest.mark.parametrize("name", sorted(_documents()))
@pytest.mark.parametrize("argv", [["status"], ["status", "--json"]])
def test_fast_and_click_paths_print_the_same_bytes(
        name: str, argv: list[str], unix_gateway: FakeGateway,  # noqa: F811
        capsys: pytest.CaptureFixture[str]) -> None:
    unix_gateway.status_override = json.dumps(_documents()[name])
    assert fastcli.try_fast(argv) is True
    fast = capsys.readouterr().out
    clicked = invoke(CliRunner(), *argv)
    assert clicked.exit_code == 0, clicked.output
    assert fast == clicked.stdout
    assert "\x1b[" not in fast  # not a terminal: no styles


def test_forced_styles_are_the_same_on_both_paths(
        unix_gateway: FakeGateway, capsys: pytest.CaptureFixture[str],  # noqa: F811
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FORCE_COLOR", "1")
    unix_gateway.status_override = json.dumps(_documents()["busy"])
    assert fastcli.try_fast(["status"]) is True
    fast = capsys.readouterr().out
    assert "\x1b[31m" in fast and "\x1b[1m" in fast
    assert invoke(CliRunner(), "status").stdout == fast


def _run(code: list[str], *args: str) -> subprocess.CompletedProcess[bytes]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, *code, *args], env=env, capture_output=True, timeout=60,
                          cwd=str(ROOT))


@pytest.mark.parametrize("args", [(), ("--json",)])
def test_the_console_entry_prints_what_the_click_cli_prints(
        args: tuple[str, ...], unix_gateway: FakeGateway) -> None:  # noqa: F811
    unix_gateway.status_override = json.dumps(_documents()["busy"])
    fast = _run(["-m", "hearthnet"], "status", *args)
    clicked = _run(["-c", CLICK], "status", *args)
    assert (fast.returncode, fast.stdout, fast.stderr) == (0, clicked.stdout, b"")
    assert clicked.returncode == 0
    assert len(unix_gateway.requests) == 2  # the fast path asked once, and printed


@pytest.mark.parametrize("override, token, code", [
    (None, "someone-elses-token", 4),           # refused: unauthorized
    ("this is not json", None, 1),              # bad_response
    (json.dumps({"hello": "world"}), None, 1),  # not a status document
])
def test_errors_go_through_the_click_cli(
        override: str | None, token: str | None, code: int, unix_gateway: FakeGateway,  # noqa: F811
        env: Any) -> None:  # noqa: F811
    unix_gateway.status_override = override
    if token:
        env.token_file.write_text(token)
    for args in ((), ("--json",)):
        assert fastcli.try_fast(["status", *args]) is False
        fast = _run(["-m", "hearthnet"], "status", *args)
        clicked = _run(["-c", CLICK], "status", *args)
        assert fast.returncode == clicked.returncode == code
        assert (fast.stdout, fast.stderr) == (clicked.stdout, clicked.stderr)
    assert b"Error:" in fast.stderr or b'"error"' in fast.stdout


def test_a_tcp_endpoint_or_other_arguments_go_to_click(
        env: Any, capsys: pytest.CaptureFixture[str]) -> None:  # noqa: F811
    env.run.mkdir(parents=True)
    env.token_file.write_text("t")
    (env.run / "api.json").write_text(json.dumps({"host": "127.0.0.1", "port": 9}))
    assert fastcli.try_fast(["status"]) is False
    assert fastcli.try_fast(["status", "--json", "-v"]) is False
    assert fastcli.try_fast(["--json", "status"]) is False
    assert capsys.readouterr().out == ""


@pytest.mark.parametrize("args", [(), ("--json",)])
def test_ctrl_c_on_the_fast_path_ends_as_the_click_command_does(
        args: tuple[str, ...], unix_gateway: FakeGateway, monkeypatch: pytest.MonkeyPatch,  # noqa: F811
        capsys: pytest.CaptureFixture[str]) -> None:
    from hearthnet.cli import boundary

    def interrupted() -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(fastcli, "status_document", interrupted)
    with pytest.raises(SystemExit) as fast_exit:
        fastcli.try_fast(["status", *args])
    fast = capsys.readouterr()
    code = boundary.execute(interrupted, as_json=bool(args))  # the click command's boundary
    clicked = capsys.readouterr()
    assert fast_exit.value.code == code == 2
    assert (fast.out, fast.err) == (clicked.out, clicked.err)
    assert "aborted" in fast.out + fast.err


@pytest.mark.parametrize("args", [(), ("--json",)])
def test_a_node_that_does_not_answer_is_reported_once_as_click_reports_it(
        args: tuple[str, ...], unix_gateway: FakeGateway, monkeypatch: pytest.MonkeyPatch,  # noqa: F811
        capsys: pytest.CaptureFixture[str]) -> None:
    from hearthnet import http10

    asked: list[str] = []

    def hangs(socket_path: str, path: str, *a: Any, **kw: Any) -> bytes:
        asked.append(path)
        raise TimeoutError

    monkeypatch.setattr(http10, "get", hangs)
    with pytest.raises(SystemExit) as fast_exit:
        fastcli.try_fast(["status", *args])
    fast = capsys.readouterr()
    assert asked == ["/api/v1/status"]  # not asked a second time through click
    clicked = invoke(CliRunner(), "status", *args)
    assert fast_exit.value.code == clicked.exit_code == 1
    assert (fast.out, fast.err) == (clicked.stdout, clicked.stderr)
    assert "did not answer in time" in fast.out + fast.err
