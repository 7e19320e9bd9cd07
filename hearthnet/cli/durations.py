"""Durations people type on the command line (`--ttl 3d`, `--expires 6h`)."""
from __future__ import annotations

import re

_DURATION_RE = re.compile(r"^\s*(\d+)\s*([smhdw]?)\s*$", re.IGNORECASE)
_UNIT = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_ttl(text: str | None) -> int | None:
    """Seconds from `3600`, `90s`, `30m`, `12h`, `3d`, `1w`; exit 2 for anything else."""
    from hearthnet.errors import HearthNetError

    if text is None:
        return None
    m = _DURATION_RE.match(text)
    if m is None or int(m.group(1)) == 0:
        raise HearthNetError("usage", f"--ttl {text!r} is not a duration: seconds, or a number with s, m, h, d or w "
                                      "(e.g. 12h, 3d)")
    return int(m.group(1)) * _UNIT[m.group(2).lower()]
