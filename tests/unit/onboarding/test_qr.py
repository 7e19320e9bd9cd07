"""QR codes: terminal rendering (shape, quiet zone, same modules), PNG round trip through
zxing-cpp, and images without a readable code."""
from __future__ import annotations

import pytest

from hearthnet.onboarding.errors import OnboardingError
from hearthnet.onboarding.invite import encode_invite
from hearthnet.onboarding.qr import (
    QUIET_ZONE,
    is_png,
    matrix_from_terminal,
    qr_matrix,
    read_qr_png,
    terminal_qr,
    write_qr_png,
)
from tests.unit.onboarding.conftest import make_blob


def test_terminal_qr_shape(inviter, invitee):
    text = encode_invite(make_blob(inviter, invitee))
    modules = qr_matrix(text)
    art = terminal_qr(text)
    lines = art.splitlines()
    side = len(modules) + 2 * QUIET_ZONE
    assert len(modules) == len(modules[0]) and (len(modules) - 17) % 4 == 0  # a real QR size
    assert len(modules) <= 65  # version 12 or lower: with its quiet zone it fits 80 columns
    assert all(len(line) == side for line in lines)
    assert len(lines) == (side + 1) // 2  # two module rows per text row
    assert set(art) <= set("▀▄█ \n")
    assert lines[0] == "█" * side and lines[1] == "█" * side  # the light quiet zone
    assert all(line.startswith("████") and line.endswith("████") for line in lines[:-1])
    assert matrix_from_terminal(art) == modules


def test_png_round_trip_through_zxing(tmp_path, inviter, invitee):
    text = encode_invite(make_blob(inviter, invitee))
    path = write_qr_png(text, tmp_path / "sub" / "invite.png")
    assert is_png(path) and (path.stat().st_mode & 0o777) == 0o644
    from PIL import Image

    with Image.open(path) as image:
        side = (len(qr_matrix(text)) + 2 * QUIET_ZONE) * 8  # box_size 8
        assert image.size == (side, side)
    assert read_qr_png(path) == text


def test_files_without_a_code_are_invalid_invites(tmp_path):
    from PIL import Image

    blank = tmp_path / "blank.png"
    Image.new("L", (200, 200), 255).save(blank)
    with pytest.raises(OnboardingError) as err:
        read_qr_png(blank)
    assert err.value.code == "invite_invalid" and "no readable QR code" in err.value.message
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    with pytest.raises(OnboardingError) as err:
        read_qr_png(junk)
    assert err.value.code == "invite_invalid"
    assert not is_png(tmp_path / "missing.png")
