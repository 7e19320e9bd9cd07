"""Human-readable quantities and ids for notes and the CLI (click-free: the fast
`hearthnet status` path, hearthnet.statusview, uses them; hearthnet.cli.render re-exports)."""
from __future__ import annotations


def size_text(n: int) -> str:
    """1234567 -> "1.2 MB" (decimal units, as disks are sold)."""
    value = float(n)
    for unit in ("kB", "MB", "GB", "TB"):
        value /= 1000
        if value < 1000 or unit == "TB":
            return f"{n} B" if n < 1000 else f"{value:.1f} {unit}"
    return f"{n} B"


def duration(seconds: float | int | None) -> str:
    """A compact duration: 45s, 3m12s, 5h02m, 2d03h."""
    if seconds is None:
        return "-"
    s = int(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


_B32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"  # RFC 4648 base32 (base64.b32encode's alphabet)


def short_node_id(node_id: str | None) -> str:
    """Display form of a full NodeID (`ed25519:<base64url pubkey>`): base32 of the first
    10 bytes in four groups of four (DESIGN.md §5). Anything else is shown shortened.
    binascii, not base64: base64 imports re (the fast CLI path's cost)."""
    if not node_id:
        return "-"
    prefix, _, rest = node_id.partition(":")
    if prefix == "ed25519" and len(rest) == 43:
        import binascii

        try:  # base64.urlsafe_b64decode(rest + "=")
            raw = binascii.a2b_base64((rest + "=").translate(_URLSAFE).encode("ascii"))
        except (binascii.Error, ValueError):
            raw = b""
        if len(raw) == 32:
            bits = int.from_bytes(raw[:10], "big")  # 80 bits: 16 base32 digits, no padding
            b32 = "".join(_B32[(bits >> (75 - 5 * i)) & 31] for i in range(16))
            return "ed25519:" + "-".join(b32[i : i + 4] for i in range(0, 16, 4))
        return node_id
    if prefix == "ed25519" and len(rest) == 19:  # already short
        return node_id
    return node_id if len(node_id) <= 24 else node_id[:23] + "…"


_URLSAFE = str.maketrans("-_", "+/")


def cell(value: object) -> str:
    """A table cell as both status renderers and the CLI's tables show it."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.1f}"
    return str(value)
