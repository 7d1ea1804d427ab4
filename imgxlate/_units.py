"""How sizes and counts are shown to people: one rule for the CLI, the trainer and the web page.

Decimal units (1 KB = 1000 bytes), as file managers on macOS and phones show them and as the docs
quote model files ("11.6 MB"); a binary figure labelled "MB" was 4.6 % off at that size.
"""

from __future__ import annotations


def file_size(n: float) -> str:
    """``n`` bytes as "812 B", "3.8 KB", "11.6 MB" or "1.2 GB"."""
    for unit in ("B", "KB", "MB"):
        if round(n, 0 if unit == "B" else 1) < 1000:  # 999 950 B is "1.0 MB", not "1000.0 KB"
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"


def counted(n: int, noun: str, plural: str | None = None) -> str:
    """``n`` and the noun in the number it takes: "1 image", "2 images", "0 steps"."""
    return f"{n} {noun if n == 1 else (plural or noun + 's')}"
