"""Thresholds from subscriber folds: fold models never see the subscribers they score; rates per window."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

import models.train as train_mod
from core.errors import TrainingDataError
from models.train import TrainConfig, _rate_of_one_task, choose_threshold, subscriber_folds

pytestmark = pytest.mark.unit

DAY = 86_400_000


def test_windowed_rate_counts_subscriber_days_per_window() -> None:
    # Week one sees a, b; week two sees c, d: one 14-day city has 4 subscribers, two 7-day cities 2 each.
    subs = ["a", "b", "a", "c", "d", "c"]
    avail = np.asarray([0, DAY, 6 * DAY, 8 * DAY, 9 * DAY, 14 * DAY])
    assert _rate_of_one_task(subs, avail) == pytest.approx(10_000 / 4 / 14)
    assert _rate_of_one_task(subs, avail, 7 * DAY) == pytest.approx(10_000 / (2 * 7 + 2 * 7))
    # The same subscribers every week: windows change nothing.
    same = ["a", "b", "a", "a", "b", "b"]
    assert _rate_of_one_task(same, avail, 7 * DAY) == pytest.approx(_rate_of_one_task(same, avail))
    # A window longer than the history is the whole history.
    assert _rate_of_one_task(subs, avail, 30 * DAY) == pytest.approx(_rate_of_one_task(subs, avail))


def test_choose_threshold_uses_the_windowed_rate() -> None:
    # Two weeks of two innocent subscribers each (4 distinct, 28 subscriber-days per window count): one task
    # is 10_000 / 28 per 10k per day windowed, 10_000 / 56 over the whole span.
    subs = ["a", "b", "a", "c", "d", "c"]
    avail = np.asarray([0, DAY, 6 * DAY, 8 * DAY, 9 * DAY, 14 * DAY])
    scores = np.asarray([0.9, 0.8, 0.1, 0.7, 0.6, 0.1])
    budget = train_mod.REAL_VICTIMS_PER_10K_PER_DAY + 2 * 10_000 / 56  # two tasks over the whole span
    assert choose_threshold(scores, subs, avail, set(), budget, DAY) == pytest.approx(0.8)
    assert choose_threshold(scores, subs, avail, set(), budget, DAY, window_ms=7 * DAY) == pytest.approx(0.9)


def test_subscriber_folds_are_per_subscriber_stable_and_all_used() -> None:
    subs = [f"+86138{i:08d}" for i in range(400)] * 2
    folds = subscriber_folds(subs, 4)
    assert folds.tolist() == subscriber_folds(list(reversed(subs)), 4)[::-1].tolist()
    assert (folds[:400] == folds[400:]).all()  # every row of a subscriber in one fold
    counts = np.bincount(folds, minlength=4)
    assert counts.min() > 0.15 * len(subs)


def test_fold_models_never_see_the_subscribers_they_score(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(1)
    n = 600
    subs = [f"s{int(i)}" for i in rng.integers(0, 50, n)]
    y = (rng.random(n) < 0.3).astype(np.int8)
    data = SimpleNamespace(X=np.arange(n, dtype=np.float64).reshape(-1, 1), avail_ms=np.arange(n) * 1000)
    train, stop, calib = train_mod._split(data.avail_ms, (0.6, 0.75))
    seen: list[set[str]] = []
    scored: list[int] = []

    def fake_fit(data_: Any, y_: Any, tr: np.ndarray, st: np.ndarray, ca: np.ndarray, *_: Any) -> Any:
        used = tr | st | ca
        seen.append({subs[i] for i in np.nonzero(used)[0]})

        def predict(X: np.ndarray, **_: Any) -> np.ndarray:
            rows = X[:, 0].astype(int).tolist()
            assert not {subs[i] for i in rows} & seen[-1], "a fold model scored a subscriber it was fitted on"
            scored.extend(rows)
            return np.full(len(rows), 0.5)

        return SimpleNamespace(booster=SimpleNamespace(predict=predict), best=1, slope=1.0, intercept=0.0)

    monkeypatch.setattr(train_mod, "_fit", fake_fit)
    config = TrainConfig(threshold_folds=4)
    out = train_mod._fold_scores(data, y, subs, train, stop, calib, {}, config)  # type: ignore[arg-type]
    assert len(seen) == 4
    assert sorted(scored) == list(range(n))  # every row scored exactly once
    assert out == pytest.approx(np.full(n, 0.5))


def test_too_small_a_history_for_folds_falls_back_to_none(monkeypatch: pytest.MonkeyPatch) -> None:
    # Every positive belongs to one subscriber: the fold holding it leaves the others without positives.
    n = 200
    subs = [f"s{i % 20}" for i in range(n)]
    y = np.asarray([1 if sub == "s3" else 0 for sub in subs], dtype=np.int8)
    data = SimpleNamespace(X=np.zeros((n, 1)), avail_ms=np.arange(n) * 1000)
    train, stop, calib = train_mod._split(data.avail_ms, (0.6, 0.75))

    def no_fit(*_: Any) -> Any:
        raise AssertionError("no fold model may be fitted when a fold cannot be")

    monkeypatch.setattr(train_mod, "_fit", no_fit)
    config = TrainConfig(threshold_folds=4)
    assert train_mod._fold_scores(data, y, subs, train, stop, calib, {}, config) is None  # type: ignore[arg-type]


def test_threshold_warmup_keeps_only_the_rows_after_it() -> None:
    subs = ["a", "b", "c", "d"]
    avail = np.asarray([0, DAY, 7 * DAY, 8 * DAY]) + 5 * DAY  # the history starts on day 5
    scores = np.asarray([0.9, 0.8, 0.7, 0.6])
    kept_scores, kept_subs, kept_avail = train_mod._after_warmup(scores, subs, avail, 5 * DAY, 7)
    assert kept_subs == ["c", "d"] and kept_scores.tolist() == [0.7, 0.6]
    assert kept_avail.tolist() == [12 * DAY, 13 * DAY]
    with pytest.raises(TrainingDataError, match="warm-up of 9 days"):
        train_mod._after_warmup(scores, subs, avail, 5 * DAY, 9)
