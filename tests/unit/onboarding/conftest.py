"""Onboarding tests: isolated XDG tree per test (no HEARTHNET_* leaks), and invites."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from hearthnet.identity import keys
from hearthnet.identity.keys import KeyPair
from hearthnet.identity.manifest import rfc3339
from hearthnet.onboarding.invite import InviteBlob, sign_invite
from tests.unit.xdg_fixture import isolated_xdg  # noqa: F401  (autouse)

NOW = datetime(2026, 5, 26, 8, 0, 0, tzinfo=timezone.utc)


@pytest.fixture
def inviter() -> KeyPair:
    return keys.generate()


@pytest.fixture
def invitee() -> KeyPair:
    return keys.generate()


def make_blob(inviter: KeyPair, invitee: KeyPair | str, **over: Any) -> InviteBlob:
    fields: dict[str, Any] = {
        "community_id": inviter.node_id_full, "community_name": "Maple Street",
        "invitee_node_id": invitee if isinstance(invitee, str) else invitee.node_id_full,
        "initial_level": "member",
        "bootstrap_endpoints": [{"transport": "https", "host": "192.168.1.20", "port": 7080}],
        "expires_at": rfc3339(NOW + timedelta(hours=24)),
    }
    fields.update(over)
    return sign_invite(inviter, **fields)
