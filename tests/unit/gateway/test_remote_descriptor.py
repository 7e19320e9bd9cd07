"""What a peer's manifest entry becomes in our broker: the contract's timeouts, trust
member, idempotence from the contract's list."""
from __future__ import annotations

from typing import Any

from hearthnet.constants import LLM_GENERATION_DEFAULT_TIMEOUT_SECONDS, RPC_DEFAULT_TIMEOUT_SECONDS
from hearthnet.gateway.peers import remote_descriptor


def entry(name: str) -> dict[str, Any]:
    return {"name": name, "version": "1.0", "stability": "stable", "schema_hash": "blake3:" + "0" * 64,
            "params": {}, "max_concurrent": 4}


def test_file_capabilities_get_the_contracts_timeouts() -> None:
    got = {n: remote_descriptor(entry(n))["timeout_seconds"]
           for n in ("file.read", "file.list", "file.advertise", "file.put", "llm.chat", "market.list")}
    assert got == {"file.read": 300, "file.list": 5, "file.advertise": 5, "file.put": 600,
                   "llm.chat": LLM_GENERATION_DEFAULT_TIMEOUT_SECONDS, "market.list": RPC_DEFAULT_TIMEOUT_SECONDS}


def test_trust_is_member_and_idempotence_comes_from_the_contract() -> None:
    read, put = remote_descriptor(entry("file.read")), remote_descriptor(entry("file.put"))
    assert read["trust_required"] == put["trust_required"] == "member"
    assert read["idempotent"] and not put["idempotent"]
