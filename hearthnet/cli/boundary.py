"""The CLI's single error boundary (STYLE.md: magic-wormhole's dispatcher).

Every command body runs inside `run()`. Known failures (HearthNetError and its
ConfigError / IdentityError / NodeNotRunning / UserAbort subclasses) become one plain
`Error: ...` line, an optional hint, and the exit code of `hearthnet.errors`. Anything
unexpected becomes "internal error: <type>: <msg>; details in the log" with exit 1, and
the traceback goes to `<LOG>/cli.log` - never to the terminal unless HEARTHNET_DEBUG=1.
With `--json` the error is the envelope `{"ok": false, "schema_version": 1, "error":
{"code", "message", "hint"}}` on stdout instead (hearthnet.cli.render).
"""
from __future__ import annotations

import errno
import json
import os
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NoReturn

import click

from hearthnet.cli import render
from hearthnet.errors import EXIT_ERROR, EXIT_USAGE, HearthNetError, exit_code_for

if TYPE_CHECKING:
    from pathlib import Path

    from hearthnet.cli.state import CliState

# Plain-language next steps for errors whose message says what, not what to do.
HINTS: dict[str, str] = {
    "node_not_running": "start the node with `hearthnet run` (or pass the --config of the node you mean)",
    "keys_missing": "run `hearthnet init` to create this node's identity",
    "keys_permissions": "make the private key readable only by you: chmod 600 <key file> (see `hearthnet doctor`)",
    "keys_invalid": "restore the key file from a backup; `hearthnet init` on an empty key dir creates a new identity",
    "disk_full": "free some disk space and try again",
}


def debug_enabled() -> bool:
    return os.environ.get("HEARTHNET_DEBUG", "") not in ("", "0")


def hint_for(exc: HearthNetError) -> str | None:
    details = exc.details or {}
    if details.get("hint"):
        return str(details["hint"])
    if details.get("retry_after_ms") is not None:
        return f"the node is busy; retry after {details['retry_after_ms']} ms"
    if exc.code in ("invalid_toml", "invalid_field", "path_resolution") and details.get("path"):
        return f"fix {details['path']} (or run `hearthnet doctor --check config_valid`)"
    return HINTS.get(exc.code)


def run(
    fn: Callable[[], Any],
    *,
    as_json: bool = False,
    state: "CliState | None" = None,
    out: render.Output | None = None,
) -> NoReturn:
    """Run a command body, render its result, and exit with the right code."""
    code = execute(fn, as_json=as_json, state=state, out=out)
    ctx = click.get_current_context(silent=True)
    if ctx is not None:
        ctx.exit(code)
    raise SystemExit(code)


def execute(
    fn: Callable[[], Any],
    *,
    as_json: bool = False,
    state: "CliState | None" = None,
    out: render.Output | None = None,
) -> int:
    """Run `fn`, print its result or its error; return the exit code. Never raises
    except for click's own control flow (usage errors, explicit exits)."""
    out = out if out is not None else render.Output()
    try:
        result = fn()
        if result is None:
            return 0
        render.emit(result, as_json=as_json, out=out)
        return int(getattr(result, "exit_code", 0))
    except (click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort):
        raise
    except HearthNetError as exc:
        _traceback_if_debug(out)
        _end_partial_line(out)
        render.error(exc.code, exc.message, hint_for(exc), as_json=as_json, out=out)
        return exc.exit_code
    except KeyboardInterrupt:
        _end_partial_line(out)
        render.error("user_abort", "aborted", None, as_json=as_json, out=out)
        return EXIT_USAGE
    except BrokenPipeError:
        raise  # click's main() quiets a closed pipe (`hearthnet log | head`)
    except OSError as exc:
        if exc.errno != errno.ENOSPC:
            return _internal(exc, as_json=as_json, state=state, out=out)
        _traceback_if_debug(out)
        where = f" writing {exc.filename}" if exc.filename else ""
        render.error("disk_full", f"disk full{where}", HINTS["disk_full"], as_json=as_json, out=out)
        return exit_code_for("disk_full")
    except Exception as exc:  # the boundary: anything else is a bug, reported once
        return _internal(exc, as_json=as_json, state=state, out=out)


def _internal(exc: BaseException, *, as_json: bool, state: "CliState | None", out: render.Output) -> int:
    message = f"internal error: {type(exc).__name__}: {exc}; details in the log"
    logged = _log_internal_error(exc, state)
    if debug_enabled():
        import traceback

        out.echo("".join(traceback.format_exception(exc)), err=True)
        hint = None
    elif logged is not None:
        hint = f"the traceback is in {logged} (HEARTHNET_DEBUG=1 prints it here)"
    else:
        hint = "the log could not be written; run again with HEARTHNET_DEBUG=1 to see the traceback"
    render.error("internal_error", message, hint, as_json=as_json, out=out)
    return EXIT_ERROR


def _log_internal_error(exc: BaseException, state: "CliState | None") -> "Path | None":
    """Append the traceback as one JSON log record to <LOG>/cli.log (so `hearthnet log
    --component cli` shows it). Returns the file, or None if it could not be written."""
    try:
        log_dir = state.log_dir() if state is not None else _default_log_dir()
    except HearthNetError:
        log_dir = _default_log_dir()
    if log_dir is None:
        return None
    import traceback

    now = time.time()
    record = {
        "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now % 1 * 1000):03d}Z",
        "level": "error",
        "component": "cli",
        "logger": "hearthnet.cli",
        "msg": f"internal error: {type(exc).__name__}: {exc}",
        "exc": "".join(traceback.format_exception(exc)),
    }
    path = log_dir / "cli.log"
    try:
        from hearthnet.logs import append_private  # 0600: logs are the owner's alone

        append_private(path, json.dumps(record, ensure_ascii=False, default=str) + "\n")
    except OSError:
        return None
    return path


def _default_log_dir() -> "Path | None":
    from hearthnet.paths import default_paths

    return default_paths().log_dir


def _traceback_if_debug(out: render.Output) -> None:
    if debug_enabled():
        import traceback

        out.echo(traceback.format_exc(), err=True)


def _end_partial_line(out: render.Output) -> None:
    """After Ctrl-C in the middle of streamed output, start the error on a fresh line."""
    if getattr(out, "partial_line", False):
        out.echo()
