from __future__ import annotations

import pytest

from hearthnet.errors import HearthNetError
from hearthnet.identity.keys import generate
from hearthnet.transport.trust import check_caller, level_of, permits

ME, ANCHOR, TRUSTED, MEMBER, GONE, STRANGER, ODD = (generate().node_id_full for _ in range(7))
COMMUNITY = {
    "members": [{"node_id": ME, "level": "member"}, {"node_id": ANCHOR, "level": "anchor"},
                {"node_id": TRUSTED, "level": "trusted"}, {"node_id": MEMBER, "level": "member"},
                {"node_id": GONE, "level": "trusted"}, {"node_id": ODD, "level": "overlord"}],
    "revoked": [{"node_id": GONE, "revoked_at": "2026-05-26T08:14:22Z"}],
}


def test_levels():
    assert level_of(ME, COMMUNITY, self_node_id=ME) == "self"
    assert level_of(ME, COMMUNITY) == "member"  # without knowing who we are
    assert level_of(ANCHOR, COMMUNITY, self_node_id=ME) == "anchor"
    assert level_of(TRUSTED, COMMUNITY) == "trusted"
    assert level_of(MEMBER, COMMUNITY) == "member"
    assert level_of(GONE, COMMUNITY) == "revoked"
    assert level_of(STRANGER, COMMUNITY) == "unknown"
    assert level_of(ODD, COMMUNITY) == "unknown"  # an unknown word grants nothing


def test_revocation_beats_self():
    assert level_of(GONE, COMMUNITY, self_node_id=GONE) == "revoked"


@pytest.mark.parametrize("level,allowed", [
    ("member", {"member"}),
    ("trusted", {"member", "trusted"}),
    ("anchor", {"member", "trusted", "anchor"}),
    ("self", {"member", "trusted", "anchor", "self"}),
    ("unknown", set()),
    ("revoked", set()),
])
def test_permits_order(level, allowed):
    for required in ("member", "trusted", "anchor", "self", "bogus"):
        assert permits(level, required) == (required in allowed), (level, required)


def test_check_caller():
    assert check_caller(TRUSTED, COMMUNITY, "trusted") == "trusted"
    assert check_caller(ME, COMMUNITY, "self", self_node_id=ME) == "self"
    for node, required, code in [(MEMBER, "trusted", "unauthorized"), (ANCHOR, "self", "unauthorized"),
                                 (STRANGER, "member", "unauthorized"), (GONE, "member", "revoked")]:
        with pytest.raises(HearthNetError) as exc:
            check_caller(node, COMMUNITY, required, self_node_id=ME)
        assert exc.value.code == code, (node, required)
