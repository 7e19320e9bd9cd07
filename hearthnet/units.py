"""Human-readable quantities for notes and the CLI."""
from __future__ import annotations


def size_text(n: int) -> str:
    """1234567 -> "1.2 MB" (decimal units, as disks are sold)."""
    value = float(n)
    for unit in ("kB", "MB", "GB", "TB"):
        value /= 1000
        if value < 1000 or unit == "TB":
            return f"{n} B" if n < 1000 else f"{value:.1f} {unit}"
    return f"{n} B"
