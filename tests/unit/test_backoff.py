"""Bounds of the delivery backoff (exponential, capped, full jitter)."""

from __future__ import annotations

import random

import pytest

from alerting.backoff import backoff_delay

pytestmark = pytest.mark.unit


class _Fixed(random.Random):
    """A Random whose uniform() returns one end of the interval, to probe the bounds exactly."""

    def __init__(self, top: bool) -> None:
        super().__init__(0)
        self.top = top

    def uniform(self, a: float, b: float) -> float:
        return b if self.top else a


@pytest.mark.parametrize("failures", range(1, 40))
def test_delay_within_full_jitter_bounds(failures: int) -> None:
    rng = random.Random(failures)
    ceiling = min(2.0, 0.1 * 2 ** (failures - 1))
    for _ in range(200):
        assert 0.0 <= backoff_delay(failures, 0.1, 2.0, rng) <= ceiling


def test_ceiling_doubles_then_caps() -> None:
    top = _Fixed(top=True)
    assert [backoff_delay(n, 0.1, 1.0, top) for n in range(1, 7)] == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.0, 1.0])


def test_lower_bound_is_zero() -> None:
    assert backoff_delay(5, 0.1, 1.0, _Fixed(top=False)) == 0.0


def test_huge_attempt_counts_do_not_overflow() -> None:
    assert backoff_delay(10_000, 0.2, 10.0, _Fixed(top=True)) == 10.0


def test_jitter_spreads_delays() -> None:
    rng = random.Random(7)
    delays = {round(backoff_delay(6, 0.1, 10.0, rng), 6) for _ in range(50)}
    assert len(delays) > 40  # not a fixed schedule: deliverers recovering together do not stampede


@pytest.mark.parametrize(("failures", "base", "cap"), [(0, 0.1, 1.0), (-1, 0.1, 1.0), (1, -0.1, 1.0), (1, 0.1, -1.0)])
def test_invalid_arguments(failures: int, base: float, cap: float) -> None:
    with pytest.raises(ValueError):
        backoff_delay(failures, base, cap)
