"""supervisord's entry point as `hearthnet run` starts it: supervisord itself, with one
change to how it survives a full disk.

supervisord writes every worker's output to `<LOG>/<worker>.log`. When a write fails
(ENOSPC, EIO), its log handler prints a traceback to its own stderr (`<run dir>/
supervisord.out`) — one per dropped line, so a full log disk would fill the run dir with
tracebacks — and when that print fails too (the run dir on the same full disk), the
error climbs out of the handler into supervisord's loop, which then stops, and the workers
with it. Here a line that cannot be written is dropped and counted instead
(`dropped_lines`), and only the first drop is reported, once. supervisor is pinned
(pyproject.toml): `Handler.handleError` is the one hook its loggers call.
"""
from __future__ import annotations

import sys
from typing import Any

_dropped = 0


def dropped_lines() -> int:
    return _dropped


def _handle_error(original: Any) -> Any:
    def handle_error(self: Any) -> None:
        global _dropped
        if isinstance(sys.exc_info()[1], OSError):
            _dropped += 1
            if _dropped > 1:
                return
        try:
            original(self)  # the traceback on stderr: once for a full disk, always for a bug
        except OSError:
            pass

    return handle_error


def install() -> None:
    from supervisor import loggers

    loggers.Handler.handleError = _handle_error(loggers.Handler.handleError)


def main() -> None:
    install()
    from supervisor import supervisord

    supervisord.main()


if __name__ == "__main__":
    main()
