"""Lean processes (issue 11, README "Benchmarks": bench/memory.py, bench/cli_latency.py):
what a light worker, `hearthnet status --json` and supervisord's RPC client import. Each
check runs a fresh interpreter, so what another test imported does not count."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.unit.unix_gateway import env, unix_gateway  # noqa: F401  (fixtures)

ROOT = Path(__file__).resolve().parents[2]
# Every worker but embedding/rag (they hold a model or an index), the gateway (aiohttp is
# its server) and discovery (zeroconf for mDNS; its own test below); the broker only asks
# supervisord over http.client.
LIGHT_WORKERS = ("broker", "ledger", "governance", "file", "llm", "chat", "market", "alerts", "emergency")
HEAVY = ("aiohttp", "numpy", "rich", "gradio", "click", "supervisor", "cryptography", "zeroconf",
         "platformdirs", "psutil")


def loaded(code: str, names: tuple[str, ...]) -> list[str]:
    """Which of `names` are in sys.modules after running `code` in a fresh interpreter."""
    probe = f"{code}\nimport json, sys\nprint(json.dumps([n for n in {list(names)!r} if n in sys.modules]))"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    r = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("worker", LIGHT_WORKERS)
def test_a_light_worker_imports_nothing_heavy(worker: str) -> None:
    assert loaded(f"import workers.{worker}, hearthnet.bus.worker", HEAVY) == []


def test_discovery_fetches_manifests_without_aiohttp_or_cryptography() -> None:
    """Manifests come over hearthnet/transport/peer_http.py (asyncio streams); zeroconf
    only once mDNS starts (off here, as on every single-host test node)."""
    heavy = HEAVY + ("yarl", "multidict", "hearthnet.transport.client")
    assert loaded("import workers.discovery, hearthnet.transport.peer_http", heavy) == []


GATEWAY_LATER = ("cryptography", "prometheus_client", "zeroconf", "hearthnet.doctor", "hearthnet.onboarding.switch",
                 "hearthnet.onboarding.invite", "hearthnet.gateway.metrics", "hearthnet.gateway.node_settings")


def test_the_gateway_loads_rare_paths_on_first_use() -> None:
    """The TLS identity without cryptography (x509der); doctor checks, metrics and the
    settings routes on their first request, not at start."""
    code = "\n".join([
        "import tempfile, pathlib", "from unittest import mock", "import workers.gateway",
        "from hearthnet.gateway.app import build_local_app, build_peer_app",
        "from hearthnet.gateway import health", "from hearthnet.identity.keys import generate",
        "from hearthnet.transport.tls import ensure_tls_identity",
        "d, kp = pathlib.Path(tempfile.mkdtemp()), generate()",
        "assert ensure_tls_identity(kp, d / 'tls') == ensure_tls_identity(kp, d / 'tls')  # written, then reused",
        "build_local_app(mock.MagicMock()); build_peer_app(mock.MagicMock())"])
    assert loaded(code, GATEWAY_LATER) == []


def test_status_json_fast_path_needs_neither_click_nor_http_client() -> None:
    names = ("click", "rich", "http.client", "platformdirs", "hearthnet.cli", "aiohttp",
             "dataclasses", "hearthnet.paths")
    code = "import hearthnet.fastcli, hearthnet.localapi, hearthnet.rundir; hearthnet.fastcli.status_document()"
    assert loaded(code, names) == []


# What `hearthnet status` and `status --json` may not load when the fast path serves them
# (hearthnet.fastcli): each costs the command milliseconds of its <= 60 / 100 ms budget.
FAST_PATH_NEVER = ("click", "rich", "http.client", "json", "re", "enum", "typing", "pathlib", "socket",
                   "hashlib", "base64", "dataclasses", "platformdirs", "hearthnet.cli", "hearthnet.errors",
                   "hearthnet.localapi", "hearthnet.paths", "hearthnet.config")


@pytest.mark.parametrize("argv", [["status"], ["status", "--json"]])
def test_the_fast_status_path_loads_only_c_modules_and_its_own(
        argv: list[str], unix_gateway: object) -> None:
    probe = ("import sys\nfrom hearthnet.fastcli import try_fast\n"
             f"served = try_fast({argv!r})\n"
             f"bad = [n for n in {list(FAST_PATH_NEVER)!r} if n in sys.modules]\n"
             "sys.stderr.write(repr((served, bad)))\n")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    r = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stderr == "(True, [])" and r.stdout


def test_supervisor_rpc_does_not_import_the_supervisor_package() -> None:
    assert loaded("import hearthnet.supervisor_rpc", ("supervisor", "importlib.metadata")) == []


def test_fast_status_prints_what_the_click_command_prints() -> None:
    from hearthnet import fastcli
    from hearthnet.cli import render

    doc = {"node": {"display_name": "Küche"}, "workers": [], "capabilities": [], "z": 1.5}
    assert fastcli.SCHEMA_VERSION == render.SCHEMA_VERSION
    assert fastcli.envelope_text(doc) == render.dumps(render.envelope(doc))


def test_fast_path_leaves_other_command_lines_and_a_missing_node_to_click(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from hearthnet import fastcli

    monkeypatch.setenv("HEARTHNET_RUN_DIR", str(tmp_path / "no-node"))
    assert fastcli.try_fast(["status"]) is False
    assert fastcli.try_fast(["status", "--json", "-v"]) is False
    assert fastcli.try_fast(["status", "--json"]) is False  # no node: click reports it (exit 3)
    assert capsys.readouterr().out == ""
