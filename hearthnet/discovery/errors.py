"""Discovery's error vocabulary (spec core-events-discovery §9.3).

Every DiscoveryError is logged and non-fatal: the node keeps running with whichever
mechanism still works, and `Discovery.diagnose()` explains what failed in plain words.
"""
from __future__ import annotations

from typing import Literal, get_args

from hearthnet.errors import HearthNetError

DiscoveryErrorCode = Literal["socket_in_use", "mdns_unavailable", "manifest_fetch_failed", "manifest_invalid"]
DISCOVERY_ERROR_CODES: frozenset[str] = frozenset(get_args(DiscoveryErrorCode))


class DiscoveryError(HearthNetError):
    """A discovery mechanism or a peer's manifest failed; `code` says which way."""

    code = "manifest_fetch_failed"

    def __init__(self, code: DiscoveryErrorCode, message: str = "", **details: object) -> None:
        if code not in DISCOVERY_ERROR_CODES:
            raise ValueError(f"{code!r} is not a discovery error code")
        super().__init__(code, message, **details)
