"""Which backbones are worth ranking on a project's data (the wizard's leaderboard, ``tlapp compare``'s
default): the project's own, the recommended one, then others whose weights are on this machine."""

from __future__ import annotations

from typing import Optional

from tlapp.backbones.catalog import all_entries
from tlapp.backbones.weights import offline_status


def compare_candidates(own: str, recommended: Optional[str], modality: str, most: int = 5) -> list[str]:
    """Up to ``most`` backbone names, the project's own first (the test-only tiny network only when it is
    the project's own)."""
    names = [own] + ([recommended] if recommended else [])
    names += [
        e.name for e in all_entries(include_test=False, modality=modality) if offline_status(e.name, e.default_size, {})
    ]
    return list(dict.fromkeys(names))[:most]
