"""How much memory this machine has free: the budget rules (which data to cache
in RAM) read it here, so they adapt to a laptop or a workstation alike."""

from __future__ import annotations

import os
from pathlib import Path


def available_bytes() -> int:
    """Memory available to a new allocation without swapping (Linux ``MemAvailable``;
    elsewhere free physical pages; 4 GiB when neither can be read)."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 4 * 2**30


def describe_bytes(n: float) -> str:
    """``"412 MB"`` / ``"3.1 GB"``."""
    return f"{n / 2**30:.1f} GB" if n >= 2**30 else f"{n / 2**20:.0f} MB"
