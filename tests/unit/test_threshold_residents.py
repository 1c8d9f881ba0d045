"""Training thresholds count their budget per resident when the residents are known, as the contract does."""

from __future__ import annotations

import logging

import numpy as np
import pytest

import models.train as train_mod
from models.train import _rate_of_one_task, choose_threshold

pytestmark = pytest.mark.unit

DAY = 86_400_000


def _city_with_outsiders(residents: int, outsiders: int, days: int) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Every resident and outsider is a subscriber of some row; the ten residents' rows score highest."""
    subs = [f"r{i}" for i in range(residents)] + [f"o{i}" for i in range(outsiders)]
    avail = np.linspace(0, days * DAY, len(subs)).astype(np.int64)
    scores = np.zeros(len(subs))
    scores[:10] = np.linspace(0.99, 0.90, 10)  # ten false tasks, each on its own subscriber
    return subs, avail, scores


def test_resident_rate_counts_each_city_over_its_own_window() -> None:
    avail = np.asarray([0, 10 * DAY])
    # A 10-day city of 100 and a 4-day city of 300 (its days inside the span): 1000 + 1200 resident-days.
    spans = [(100, 0, 10 * DAY), (300, 2 * DAY, 6 * DAY)]
    assert _rate_of_one_task(["a", "b"], avail, resident_spans=spans) == pytest.approx(10_000 / 2200)
    # Only what lies inside the rows' span counts: the second half of the same rows sees 500 + 300.
    half = np.asarray([5 * DAY, 10 * DAY])
    assert _rate_of_one_task(["a", "b"], half, resident_spans=spans) == pytest.approx(10_000 / 800)
    # Per resident, windows of the distinct count change nothing.
    assert _rate_of_one_task(["a", "b"], avail, 2 * DAY, spans) == pytest.approx(10_000 / 2200)


def test_outsiders_make_the_per_resident_threshold_tighter_than_the_distinct_count() -> None:
    # 1000 residents and 2000 outsider callees over 10 days: 30,000 distinct subscriber-days, 10,000
    # resident-days. A budget of 6 tasks over the distinct count is 2 tasks per resident.
    subs, avail, scores = _city_with_outsiders(1000, 2000, 10)
    budget = train_mod.REAL_VICTIMS_PER_10K_PER_DAY + 6 * 10_000 / 30_000 + 1e-9
    per_distinct = choose_threshold(scores, subs, avail, set(), budget, DAY)
    per_resident = choose_threshold(scores, subs, avail, set(), budget, DAY, resident_spans=[(1000, 0, 10 * DAY)])
    assert per_distinct == pytest.approx(scores[5])  # six tasks
    assert per_resident == pytest.approx(scores[1])  # two tasks
    assert per_resident > per_distinct


def test_unknown_residents_fall_back_to_the_distinct_count_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="models.train"):
        assert train_mod._population_note(()) == "distinct_subscriber"
    assert "residents unknown" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="models.train"):
        assert train_mod._population_note([(10, 0, DAY)]) == "resident"
    assert not caplog.text
