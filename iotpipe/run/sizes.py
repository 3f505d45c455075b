"""Byte sizes with units, as users type them (64MiB, 5GiB)."""

from __future__ import annotations

import re

# A run may generate at most this much unless asked on purpose (`allow_large`, `--allow-large`):
# a typo such as 64TiB for 64GiB would otherwise fill a disk or a bill.
MAX_GENERATE_BYTES = 64 * 2**30

_UNITS = {
    "": 1,
    "B": 1,
    "KB": 10**3,
    "MB": 10**6,
    "GB": 10**9,
    "KIB": 2**10,
    "MIB": 2**20,
    "GIB": 2**30,
    "TIB": 2**40,
}


def parse_size(text: str | int) -> int:
    """Parse '64MiB', '5GiB', '1.5GB' or a plain byte count into bytes."""
    if isinstance(text, int):
        return text
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([A-Za-z]*)\s*", text)
    if not match or match.group(2).upper() not in _UNITS:
        raise ValueError(f"not a size: {text!r} (examples: 64MiB, 5GiB, 1000000)")
    value = float(match.group(1)) * _UNITS[match.group(2).upper()]
    if value >= 2**63:
        raise ValueError(f"size too large: {text!r}")
    size = int(value)
    if size <= 0:
        raise ValueError(f"size must be positive: {text!r}")
    return size
