"""What each mode changes on this node (spec svc-emergency-ui §1.6; README "Emergency
detector"). One table, read by the detector's status and by the workers that act on it
(gateway sync loop, LLM worker, file worker), so `status` and the behaviour agree."""
from __future__ import annotations

from typing import Any

from hearthnet.constants import FILE_BIG_TRANSFER_BYTES, SYNC_INTERVAL_OFFLINE_SECONDS
from hearthnet.emergency.state import OFFLINE
from hearthnet.sync import SYNC_INTERVAL_SECONDS


def sync_interval(mode: str | None) -> float:
    return SYNC_INTERVAL_OFFLINE_SECONDS if mode == OFFLINE else float(SYNC_INTERVAL_SECONDS)


def internet_backends_offered(mode: str | None) -> bool:
    return mode != OFFLINE


def big_files_yield(mode: str | None) -> bool:
    return mode == OFFLINE


def effects(mode: str | None) -> dict[str, Any]:
    return {"llm_internet_backends": "offered" if internet_backends_offered(mode) else "withdrawn",
            "sync_interval_seconds": sync_interval(mode),
            "big_file_transfers": "yield" if big_files_yield(mode) else "normal",
            "big_file_bytes": FILE_BIG_TRANSFER_BYTES}
