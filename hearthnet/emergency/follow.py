"""Following this node's emergency mode from another worker: `emergency.watch` (self: only
this node's detector answers it) gives the current state, then each change. The stream is
renewed when it ends (detector restart); while there is no detector the mode is None,
which every effect treats like online (hearthnet/emergency/effects.py)."""
from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any, Awaitable, Callable

from hearthnet.errors import HearthNetError

log = logging.getLogger("hearthnet.emergency")

RENEW_SECONDS = 2.0


async def follow_mode(bus: Any, on_mode: Callable[[str | None, dict[str, Any]], Awaitable[None] | None],
                      caller: str = "") -> None:
    """Call `on_mode(mode, state)` at each change of mode, for as long as the task runs."""
    current: str | None = None
    while True:
        try:
            frames = bus.stream("emergency.watch", "1.0", {"params": {}, "input": {}}, caller=caller, local_only=True,
                                timeout=365 * 86400)
            async with contextlib.aclosing(frames):
                async for event, data in frames:
                    mode = data.get("mode") if event == "state" and isinstance(data, dict) else None
                    if mode is not None and mode != current:
                        current = mode
                        await _call(on_mode, mode, data)
        except HearthNetError as exc:
            log.debug("emergency watch ended", extra={"code": exc.code})
        except Exception:  # noqa: BLE001 - a bug in one reaction must not stop following
            log.exception("following the emergency mode failed; renewing")
        if current is not None:  # no detector: back to the online behaviour
            current = None
            await _call(on_mode, None, {})
        await asyncio.sleep(RENEW_SECONDS)


async def _call(fn: Callable[..., Any], *args: Any) -> None:
    out = fn(*args)
    if asyncio.iscoroutine(out):
        await out
