"""Task-level threshold for a dispatch budget, from the grid a model stored at training time."""

from __future__ import annotations

from typing import Any


def threshold_for_budget(meta: dict[str, Any], budget: float) -> float:
    """The threshold of the largest stored budget not above ``budget`` (the tightest when none is)."""
    grid = sorted(meta["budget_thresholds"])
    fitting = [threshold for b, threshold in grid if b <= budget]
    return float(fitting[-1] if fitting else grid[0][1])
