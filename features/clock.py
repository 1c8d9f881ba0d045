"""Time helpers shared by every feature: event time only, never the wall clock."""

from __future__ import annotations

MINUTE_MS = 60_000
HOUR_MS = 60 * MINUTE_MS
DAY_MS = 24 * HOUR_MS
WINDOW_SPANS_MS: tuple[int, ...] = (10 * MINUTE_MS, HOUR_MS, DAY_MS, 7 * DAY_MS)
WINDOW_NAMES: tuple[str, ...] = ("10m", "1h", "24h", "7d")
# The city's local offset; night-time is judged on local hours.
LOCAL_OFFSET_MS = 8 * HOUR_MS


def local_hour(ts_ms: int) -> int:
    """Local hour of day (0-23) of an event time."""
    return int(((ts_ms + LOCAL_OFFSET_MS) // HOUR_MS) % 24)
