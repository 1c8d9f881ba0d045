"""Sliding windows against a brute-force rescan, including late and capped entries."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from features.windows import SlidingWindows

pytestmark = pytest.mark.unit

SPANS = (10, 60, 300)


def brute(entries: list[tuple[int, tuple[int, ...], str | None]], now: int, span: int) -> tuple[list[int], int, int]:
    inside = [e for e in entries if now - span < e[0] <= now]
    sums = [sum(e[1][c] for e in inside) for c in range(2)]
    keys = {e[2] for e in inside if e[2] is not None}
    mx = max((e[1][1] for e in inside), default=0)
    return sums, len(keys), mx


events = st.lists(
    st.tuples(st.integers(0, 400), st.integers(0, 5), st.integers(0, 50), st.sampled_from(["a", "b", "c", None])),
    min_size=1,
    max_size=60,
)


@settings(max_examples=300, deadline=None)
@given(events=events, lateness=st.integers(0, 30))
def test_matches_brute_force(events: list[tuple[int, int, int, str | None]], lateness: int) -> None:
    # Deliver roughly in time order but let entries arrive up to ``lateness`` late.
    ordered = sorted(events, key=lambda e: e[0] + (hash((e[0], e[1], e[2])) % (lateness + 1)))
    win = SlidingWindows(SPANS, 2, max_channel=1, max_entries=10_000)
    kept: list[tuple[int, tuple[int, ...], str | None]] = []
    for ts, a, b, key in ordered:
        if win.add(ts, (a, b), key):
            kept.append((ts, (a, b), key))
        for w, span in enumerate(SPANS):
            sums, distinct, mx = brute(kept, win.now, span)
            assert win.sums(w) == sums
            assert win.distinct(w) == distinct
            assert win.maximum(w) == mx


@settings(max_examples=100, deadline=None)
@given(events=events)
def test_snapshot_round_trip_is_exact(events: list[tuple[int, int, int, str | None]]) -> None:
    win = SlidingWindows(SPANS, 2, max_channel=1)
    for ts, a, b, key in sorted(events, key=lambda e: e[0]):
        win.add(ts, (a, b), key)
    back = SlidingWindows.from_obj(win.to_obj(), SPANS, 2, max_channel=1)
    for w in range(len(SPANS)):
        assert back.sums(w) == win.sums(w)
        assert back.distinct(w) == win.distinct(w)
        assert back.maximum(w) == win.maximum(w)


@settings(max_examples=300, deadline=None)
@given(
    events=events,
    lateness=st.integers(0, 30),
    cut=st.integers(0, 60),
    cap=st.sampled_from([3, 8, 10_000]),
)
def test_a_window_decoded_mid_stream_goes_on_as_if_never_stored(
    events: list[tuple[int, int, int, str | None]], lateness: int, cut: int, cap: int
) -> None:
    # ``from_obj`` builds its sums, distinct counts and maxima in one pass instead of re-adding entries: late
    # entries, the entry cap and every later add must still agree with the window that was never stored.
    ordered = sorted(events, key=lambda e: e[0] + (hash((e[0], e[1], e[2])) % (lateness + 1)))
    live = SlidingWindows(SPANS, 2, max_channel=1, max_entries=cap)
    for ts, a, b, key in ordered[:cut]:
        live.add(ts, (a, b), key)
    stored = SlidingWindows.from_obj(live.to_obj(), SPANS, 2, max_channel=1, max_entries=cap)
    for ts, a, b, key in [(None, 0, 0, None), *ordered[cut:]]:
        if ts is not None:
            assert stored.add(ts, (a, b), key) == live.add(ts, (a, b), key)
        assert stored.now == live.now
        assert len(stored) == len(live)
        for w in range(len(SPANS)):
            assert stored.sums(w) == live.sums(w)
            assert stored.distinct(w) == live.distinct(w)
            assert stored.maximum(w) == live.maximum(w)
        assert stored.to_obj() == live.to_obj()


def test_too_late_is_refused_and_cap_bounds_memory() -> None:
    win = SlidingWindows(SPANS, 1, max_entries=5)
    for ts in range(100, 120):
        win.add(ts, (1,))
    assert len(win) == 5
    assert win.sums(0) == [5]  # only the five newest survive the cap
    assert not win.add(119 - 300, (1,))
