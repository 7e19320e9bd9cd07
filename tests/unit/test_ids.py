"""ULIDs (hearthnet/ids.py): Crockford base32 of 48-bit ms + 80 random bits, monotonic."""
from __future__ import annotations

import re
import time

from hearthnet import ids

CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def reference(value: int) -> str:
    """Digit by digit, 5 bits at a time from the top: the spec's encoding, written plainly."""
    return "".join(CROCKFORD[(value >> (5 * i)) & 31] for i in reversed(range(26)))


def decode(text: str) -> int:
    value = 0
    for ch in text:
        value = value * 32 + CROCKFORD.index(ch)
    return value


def test_ulids_are_26_crockford_digits_with_the_time_on_top() -> None:
    before = int(time.time() * 1000)
    u = ids.new_ulid()
    after = int(time.time() * 1000)
    assert re.fullmatch(r"[0-9A-HJKMNP-TV-Z]{26}", u)
    assert u[0] in "01234567"  # 130 digit bits carry 128: the top two are zero
    assert before <= decode(u) >> 80 <= after
    assert reference(decode(u)) == u


def test_ulids_made_in_one_millisecond_keep_sorting(monkeypatch) -> None:
    monkeypatch.setattr(ids.time, "time", lambda: 1_700_000_000.0)
    made = [ids.new_ulid() for _ in range(500)]
    assert made == sorted(made) and len(set(made)) == 500
    assert [decode(u) for u in made] == list(range(decode(made[0]), decode(made[0]) + 500))
