"""Exponential backoff with full jitter for delivery retries."""

from __future__ import annotations

import random


def backoff_delay(failures: int, base_s: float, cap_s: float, rng: random.Random | None = None) -> float:
    """Seconds to wait after ``failures`` failed attempts (>= 1): uniform in [0, min(cap, base * 2**(failures-1))]."""
    if failures < 1:
        raise ValueError("failures must be >= 1")
    if base_s < 0 or cap_s < 0:
        raise ValueError("base_s and cap_s must be >= 0")
    # Clamp the exponent so huge attempt counts cannot overflow a float.
    ceiling = min(cap_s, base_s * 2.0 ** min(failures - 1, 60))
    # Full jitter (uniform from zero) spreads retries of many deliverers apart after a shared outage.
    return (rng or random).uniform(0.0, ceiling)
