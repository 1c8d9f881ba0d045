"""Time helpers shared by every feature: event time only, never the wall clock."""

from __future__ import annotations

from features.params import DAY_MS, HOUR_MS, LOCAL_OFFSET_MS, MINUTE_MS, WINDOW_NAMES, WINDOW_SPANS_MS

__all__ = ["DAY_MS", "HOUR_MS", "LOCAL_OFFSET_MS", "MINUTE_MS", "WINDOW_NAMES", "WINDOW_SPANS_MS", "local_hour"]


def local_hour(ts_ms: int) -> int:
    """Local hour of day (0-23) of an event time."""
    return int(((ts_ms + LOCAL_OFFSET_MS) // HOUR_MS) % 24)
