from __future__ import annotations

import errno
import io
import json

import click
import pytest
from click.testing import CliRunner

from hearthnet.cli import boundary
from hearthnet.cli.render import Output
from hearthnet.cli.state import CliState
from hearthnet.errors import ConfigError, HearthNetError, IdentityError, NodeNotRunning, UserAbort


def _command(exc: BaseException | None = None, result=None):
    @click.command()
    @click.option("--json", "as_json", is_flag=True)
    def cmd(as_json: bool) -> None:
        def body():
            if exc is not None:
                raise exc
            return result

        boundary.run(body, as_json=as_json, state=CliState())

    return cmd


def run(exc: BaseException, *args: str):
    return CliRunner().invoke(_command(exc), list(args), catch_exceptions=False)


def test_boundary_never_prints_a_traceback(env):
    result = run(ValueError("boom"))
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    assert "Error: internal error: ValueError: boom; details in the log" in result.stderr
    log = env.log_dir / "cli.log"
    assert str(log) in result.stderr
    record = json.loads(log.read_text().splitlines()[-1])
    assert record["level"] == "error" and "ValueError: boom" in record["exc"] and "Traceback" in record["exc"]


def test_boundary_debug_prints_traceback(monkeypatch):
    monkeypatch.setenv("HEARTHNET_DEBUG", "1")
    result = run(ValueError("boom"))
    assert result.exit_code == 1
    assert "Traceback" in result.stderr


@pytest.mark.parametrize("exc,code", [
    (HearthNetError("capacity_exceeded", "busy"), 5),
    (HearthNetError("unauthorized", "who are you"), 4),
    (HearthNetError("not_found", "nope"), 1),
    (NodeNotRunning(message="no node"), 3),
    (UserAbort(message="cancelled"), 2),
    (ConfigError("invalid_field", "transport.port: 0 is not a port", path="/x/config.toml"), 1),
    (IdentityError("keys_permissions", "key readable by others"), 1),
    (KeyboardInterrupt(), 2),
    (OSError(errno.ENOSPC, "No space left on device", "/data/x"), 5),
    (OSError(errno.EACCES, "Permission denied"), 1),
])
def test_boundary_exit_codes(exc, code):
    result = run(exc)
    assert result.exit_code == code
    assert result.stderr.startswith("Error: ")
    assert "Traceback" not in result.output


def test_boundary_messages_and_hints():
    r = run(KeyboardInterrupt())
    assert r.stderr == "Error: aborted\n"
    r = run(OSError(errno.ENOSPC, "No space left on device", "/data/x"))
    assert "disk full writing /data/x" in r.stderr and "hint: free some disk space" in r.stderr
    r = run(ConfigError("invalid_field", "transport.port: 0 is not a port", path="/x/config.toml"))
    assert "Error: transport.port: 0 is not a port" in r.stderr and "hint: fix /x/config.toml" in r.stderr
    r = run(HearthNetError("capacity_exceeded", "busy", retry_after_ms=300))
    assert "retry after 300 ms" in r.stderr
    r = run(HearthNetError("x", "y", hint="do this"))
    assert "hint: do this" in r.stderr


def test_boundary_json_envelope():
    result = run(HearthNetError("capacity_exceeded", "busy", retry_after_ms=300), "--json")
    assert result.exit_code == 5
    assert json.loads(result.stdout) == {"ok": False, "schema_version": 1, "error": {
        "code": "capacity_exceeded", "message": "busy", "hint": "the node is busy; retry after 300 ms"}}
    assert result.stderr == ""
    internal = run(RuntimeError("bad"), "--json")
    assert json.loads(internal.stdout)["error"]["code"] == "internal_error"


def test_boundary_lets_click_usage_errors_through():
    result = run(click.UsageError("wrong"))
    assert result.exit_code == 2
    assert "wrong" in result.output


def test_boundary_result_exit_code_and_rendering():
    class R:
        exit_code = 1

        def to_dict(self):
            return {"a": 1}

        def human(self, out):
            out.echo("human!")

    r = CliRunner().invoke(_command(result=R()), [])
    assert r.exit_code == 1 and r.stdout == "human!\n"
    r = CliRunner().invoke(_command(result=R()), ["--json"])
    # A result that reports a failure (exit 1) keeps its keys; `ok` says it failed.
    assert json.loads(r.stdout) == {"a": 1, "ok": False, "schema_version": 1}


def test_execute_ends_a_partial_streamed_line():
    buf, err = io.StringIO(), io.StringIO()
    out = Output(out=buf, err=err)

    def body():
        out.write("partial answer")
        raise KeyboardInterrupt

    assert boundary.execute(body, out=out) == 2
    assert buf.getvalue() == "partial answer\n"
    assert err.getvalue() == "Error: aborted\n"


def test_config_error_from_bad_file_goes_through_boundary(runner, env):
    from tests.unit.cli.conftest import invoke

    env.config_file.parent.mkdir(parents=True)
    env.config_file.write_text("[transport]\nport = 'x'\n")
    result = invoke(runner, "run", "--no-ui")
    assert result.exit_code == 1
    assert "transport.port" in result.stderr and "Traceback" not in result.output
