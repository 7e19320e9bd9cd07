"""The group: lazy subcommands, help, and what each fast command may import."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from hearthnet.cli import COMMANDS, main
from tests.unit.cli.conftest import invoke

HEAVY = ("rich", "aiohttp", "zmq", "msgpack", "nacl", "gradio", "llama_cpp", "psutil", "supervisor",
         "qrcode", "PIL", "zxingcpp")

PROBE = """
import json, sys
before = set(sys.modules)
from hearthnet.cli import main
try:
    main({args!r}, prog_name="hearthnet")
except SystemExit as e:
    rc = e.code
new = sorted(set(sys.modules) - before)
print(json.dumps({{"rc": rc, "modules": new}}), file=sys.stderr)
"""


def probe(args: list[str]) -> dict:
    proc = subprocess.run([sys.executable, "-c", PROBE.format(args=args)], capture_output=True, text=True, timeout=60)
    return json.loads(proc.stderr.strip().splitlines()[-1])


def test_help_lists_every_command(runner):
    result = invoke(runner, "--help")
    assert result.exit_code == 0
    for name in COMMANDS:
        assert name in result.stdout


def test_every_lazy_command_is_a_click_command():
    import click

    ctx = click.Context(main)
    for name in COMMANDS:
        assert isinstance(main.get_command(ctx, name), click.Command), name
    assert main.get_command(ctx, "nope") is None


def test_unknown_command_is_usage_error(runner):
    assert invoke(runner, "frobnicate").exit_code == 2


def test_version_imports_only_click_and_stdlib():
    got = probe(["version"])
    assert got["rc"] == 0
    ours = {m for m in got["modules"] if m.startswith("hearthnet")}
    assert ours == {
        "hearthnet", "hearthnet.version", "hearthnet.errors", "hearthnet.cli", "hearthnet.cli.state",
        "hearthnet.cli.boundary", "hearthnet.cli.render", "hearthnet.cli.commands",
        "hearthnet.cli.commands.version", "hearthnet.units",  # render's formatters (stdlib only)
    }
    third_party = {m.split(".")[0] for m in got["modules"]} - set(sys.stdlib_module_names) - {"hearthnet", "click"}
    assert third_party == set(), third_party


@pytest.mark.parametrize("args", [
    ["status", "--json"], ["status"], ["caps", "--json"], ["call", "x", "--body", "{}"],
    ["trace", "recent", "--json"], ["log", "-n", "3"], ["completion", "bash"],
])
def test_fast_commands_stay_light(args):
    got = probe(args)
    heavy = sorted({m.split(".")[0] for m in got["modules"]} & set(HEAVY))
    assert heavy == [], (args, heavy)
    assert not any(m.startswith(("hearthnet.broker", "hearthnet.gateway", "hearthnet.bus", "hearthnet.services",
                                 "hearthnet.identity", "hearthnet.supervise", "hearthnet.onboarding"))
                   for m in got["modules"])


def test_python_dash_m_works():
    proc = subprocess.run([sys.executable, "-m", "hearthnet", "version"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stdout.startswith("hearthnet 0.1.0 ")
    help_ = subprocess.run([sys.executable, "-m", "hearthnet", "--help"], capture_output=True, text=True, timeout=60)
    assert help_.stdout.startswith("Usage: hearthnet ")
