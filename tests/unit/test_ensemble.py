"""Seed ensembles (averaged boosters are one model text scoring the mean margin) and the threshold margin."""

from __future__ import annotations

import lightgbm as lgb
import numpy as np
import pytest

from models.ensemble import average_models
from models.train import REAL_VICTIMS_PER_10K_PER_DAY, choose_threshold, false_task_rate

pytestmark = pytest.mark.unit


def _boosters(n: int) -> tuple[list[lgb.Booster], np.ndarray]:
    rng = np.random.default_rng(3)
    X = rng.random((3000, 6))
    X[:, 5] = rng.integers(0, 4, 3000)  # a categorical column: its splits must survive the merge
    y = ((X[:, 0] + 0.4 * (X[:, 5] == 2) + 0.3 * rng.random(3000)) > 0.9).astype(int)
    data = lgb.Dataset(X, y, categorical_feature=[5])
    params = {"objective": "binary", "verbose": -1, "bagging_fraction": 0.7, "bagging_freq": 1, "num_threads": 1}
    # Members of different lengths, as early stopping leaves them.
    boosters = [lgb.train({**params, "seed": s}, data, 10 + 7 * s) for s in range(n)]
    return boosters, X


def test_merged_model_scores_the_mean_margin_of_its_members() -> None:
    boosters, X = _boosters(3)
    text = average_models([b.model_to_string() for b in boosters])
    assert "\ntree_sizes=" in text  # lleaves reads the tree count from it
    merged = lgb.Booster(model_str=text)
    assert merged.num_trees() == sum(b.num_trees() for b in boosters)
    mean_margin = np.mean([b.predict(X, raw_score=True) for b in boosters], axis=0)
    np.testing.assert_allclose(merged.predict(X, raw_score=True), mean_margin, rtol=0, atol=1e-9)
    # SHAP contributions (the reasons of a task) still add up to the merged margin.
    contrib = merged.predict(X[:20], pred_contrib=True)
    np.testing.assert_allclose(contrib.sum(axis=1), mean_margin[:20], rtol=0, atol=1e-9)


def test_one_model_is_returned_unchanged() -> None:
    boosters, _ = _boosters(1)
    text = boosters[0].model_to_string()
    assert average_models([text]) == text


def test_models_on_other_features_are_refused() -> None:
    boosters, X = _boosters(1)
    other = lgb.train({"objective": "binary", "verbose": -1}, lgb.Dataset(X[:, :4], (X[:, 0] > 0.5).astype(int)), 5)
    with pytest.raises(ValueError):
        average_models([boosters[0].model_to_string(), other.model_to_string()])


def test_threshold_margin_keeps_poisson_noise_of_the_held_out_count_in_hand() -> None:
    # 10 subscribers over 1 day: one false task adds 1,000 per 10k per day. Innocent subscriber i alerts
    # once, with score (i + 1) / 10; the victim's alerts never count.
    day = 86_400_000
    subs = [f"s{i}" for i in range(9)] + ["victim"]
    scores = np.asarray([(i + 1) / 10 for i in range(9)] + [0.05])
    avail = np.asarray([i * 1000 for i in range(9)] + [day])
    budget = 3_000 + REAL_VICTIMS_PER_10K_PER_DAY  # three false tasks
    plain = choose_threshold(scores, subs, avail, {"victim"}, budget, day)
    assert plain == pytest.approx(0.7)  # s6, s7, s8
    # Three tasks plus one sd (sqrt 3) overspend; one task plus one sd (2) fits, two plus sqrt 2 does not.
    assert choose_threshold(scores, subs, avail, {"victim"}, budget, day, margin_sd=1.0) == pytest.approx(0.9)
    assert false_task_rate(scores, subs, avail, {"victim"}, 0.9, day) == pytest.approx(1_000)
