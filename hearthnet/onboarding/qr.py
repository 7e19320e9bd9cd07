"""QR codes for invites and device ids (spec §6.1): error correction M, a terminal
rendering in Unicode half blocks and a PNG (qrcode + Pillow, box_size 8); reading a PNG
back with zxing-cpp.

Terminal colours: a light module is drawn as ink (`█`, `▀`, `▄`), a dark one as a blank,
with a 4-module light quiet zone around the code. On the usual light-on-dark terminal
that is a black-on-white code, as a scanner expects (the convention of `qrencode -t
UTF8`); one text row holds two module rows.

qrcode, Pillow and zxing-cpp are imported inside the functions that need them.
"""
from __future__ import annotations

from pathlib import Path

from hearthnet.onboarding.errors import OnboardingError

QUIET_ZONE = 4  # modules of light margin the QR standard asks for
BOX_SIZE = 8
_UPPER, _LOWER, _FULL, _EMPTY = "▀", "▄", "█", " "
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def qr_matrix(text: str) -> list[list[bool]]:
    """The code's modules (True = dark), without the quiet zone; the smallest version
    holding `text` at error-correction level M."""
    import qrcode

    qr = qrcode.QRCode(error_correction=qrcode.constants.ERROR_CORRECT_M, border=0)
    qr.add_data(text)
    qr.make(fit=True)
    return [list(row) for row in qr.get_matrix()]


def terminal_qr(text: str, quiet_zone: int = QUIET_ZONE) -> str:
    """The code as lines of half-block characters (light modules inked)."""
    modules = qr_matrix(text)
    size = len(modules) + 2 * quiet_zone
    light = [[True] * size for _ in range(quiet_zone)]
    light += [[True] * quiet_zone + [not m for m in row] + [True] * quiet_zone for row in modules]
    light += [[True] * size for _ in range(quiet_zone)]
    if len(light) % 2:
        light.append([False] * size)  # a bottom half-row of blank, outside the quiet zone
    lines = []
    for top, bottom in zip(light[0::2], light[1::2]):
        lines.append("".join(_cell(t, b) for t, b in zip(top, bottom)))
    return "\n".join(lines)


def _cell(top: bool, bottom: bool) -> str:
    if top and bottom:
        return _FULL
    if top:
        return _UPPER
    return _LOWER if bottom else _EMPTY


def matrix_from_terminal(art: str, quiet_zone: int = QUIET_ZONE) -> list[list[bool]]:
    """The inverse of terminal_qr (True = dark), for tests and tools."""
    grid: list[list[bool]] = []
    for line in art.splitlines():
        top = [ch in (_FULL, _UPPER) for ch in line]
        bottom = [ch in (_FULL, _LOWER) for ch in line]
        grid += [top, bottom]
    size = len(grid[0]) - 2 * quiet_zone
    return [[not v for v in row[quiet_zone:quiet_zone + size]] for row in grid[quiet_zone:quiet_zone + size]]


def write_qr_png(text: str, path: Path, box_size: int = BOX_SIZE, mode: int = 0o644) -> Path:
    """A black-on-white PNG with the standard quiet zone, written atomically (invites pass
    0600: they are the owner's to hand over, not for other users of the machine)."""
    import io

    import qrcode

    from hearthnet.fsutil import atomic_write

    qr = qrcode.QRCode(error_correction=qrcode.constants.ERROR_CORRECT_M, box_size=box_size,
                       border=QUIET_ZONE)
    qr.add_data(text)
    qr.make(fit=True)
    image = qr.make_image(fill_color="black", back_color="white")
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    path = Path(path)
    atomic_write(path, buf.getvalue(), mode)
    return path


def is_png(path: Path) -> bool:
    try:
        with open(path, "rb") as fh:
            return fh.read(len(PNG_MAGIC)) == PNG_MAGIC
    except OSError:
        return False


def read_qr_png(path: Path) -> str:
    """The text of the (first) QR code in an image file. Raises invite_invalid when the
    file is not an image or holds no readable QR code."""
    import zxingcpp
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            image.load()
            results = zxingcpp.read_barcodes(image, formats=zxingcpp.BarcodeFormat.QRCode)
    except (OSError, UnidentifiedImageError) as exc:
        raise OnboardingError("invite_invalid", f"cannot read {path} as an image: {exc}") from None
    texts = [r.text for r in results if r.valid and r.text]
    if not texts:
        raise OnboardingError("invite_invalid", f"no readable QR code in {path}",
                              hint="photograph or save the code again, sharp and whole, or paste the invite text")
    return texts[0]
