"""Scoring a model version: feature guard, calibration, levels, batch consistency, SHAP reasons, budgets."""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pytest
from sklearn.isotonic import IsotonicRegression

from core.decode import decode_obj
from core.errors import FeatureMismatch
from features.clock import DAY_MS, HOUR_MS
from features.pipeline import FeatureEngine
from features.registry import FEATURES
from features.vector import CATEGORICAL_FEATURES, FEATURE_INDEX, FEATURE_NAMES, FEATURES_HASH, FeatureRow
from models.budget import threshold_for_budget
from models.episodes import count_tasks
from models.explain import reasons
from models.registry import ModelRegistry
from models.scoring import Scorer, load_live
from sandbox.simulate import CityConfig, simulate
from streams.scoring_runtime import LiveModel

pytestmark = pytest.mark.unit

THRESHOLDS = [0.05, 0.2, 0.5]


@dataclass
class Trained:
    registry: ModelRegistry
    version: str
    rows: list[FeatureRow]
    X: np.ndarray
    model_text: str
    meta: dict


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Trained:
    """A small LightGBM model on real feature rows of a small simulated city (about a second)."""
    city = simulate(CityConfig(subscribers=1500, days=1.0, seed=5, victims_per_10k_per_day=150))
    positives = {eid for case in city.cases for eid in case["event_ids"]}
    rows = list(FeatureEngine().run(decode_obj(e) for e in city.events))
    X = np.array([r.values for r in rows], dtype=np.float64)
    y = np.array([r.event_id in positives for r in rows], dtype=np.float64)
    assert y.sum() >= 10
    params = {
        "objective": "binary",
        "num_leaves": 15,
        "min_data_in_leaf": 5,
        "learning_rate": 0.1,
        "seed": 1,
        "deterministic": True,
        "num_threads": 1,
        "verbose": -1,
    }
    data = lgb.Dataset(X, y, feature_name=list(FEATURE_NAMES), categorical_feature=list(CATEGORICAL_FEATURES))
    booster = lgb.train(params, data, num_boost_round=40)
    raw = booster.predict(X)
    iso = IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0).fit(raw, y)
    meta = {
        "feature_names": list(FEATURE_NAMES),
        "features_hash": FEATURES_HASH,
        "calibration": {"x": iso.X_thresholds_.tolist(), "y": iso.y_thresholds_.tolist()},
        "thresholds": THRESHOLDS,
        "budget_thresholds": [[b, t] for b, t in ((0.5, 0.9), (1.0, 0.8), (2.0, 0.6), (10.0, 0.3))],
    }
    registry = ModelRegistry(tmp_path_factory.mktemp("models"))
    model_text = booster.model_to_string()
    version = registry.register(model_text, meta)
    registry.promote(version.version)
    return Trained(registry, version.version, rows, X, model_text, meta)


@pytest.fixture(scope="module")
def scorer(trained: Trained) -> Scorer:
    return Scorer(trained.registry.get(trained.version))


# -- the feature guard -----------------------------------------------------------------------------


def test_refuses_a_model_trained_on_other_features(trained: Trained) -> None:
    other = trained.registry.register(trained.model_text, {**trained.meta, "features_hash": "0123456789abcdef"})
    with pytest.raises(FeatureMismatch, match="0123456789abcdef"):
        Scorer(other)


def test_refuses_a_model_without_a_features_hash(trained: Trained) -> None:
    meta = {k: v for k, v in trained.meta.items() if k != "features_hash"}
    with pytest.raises(FeatureMismatch):
        Scorer(trained.registry.register(trained.model_text, meta))


def test_load_live_loads_the_promoted_version(trained: Trained) -> None:
    live = load_live(trained.registry)
    assert live.version == trained.version
    assert live.thresholds == tuple(THRESHOLDS)


# -- calibration and levels ------------------------------------------------------------------------


def test_calibrated_scores_are_probabilities_and_monotone(scorer: Scorer, trained: Trained) -> None:
    grid = np.linspace(-0.5, 1.5, 4001)  # also beyond [0, 1]: clipped, never extrapolated
    calibrated = scorer.calibrate(grid)
    assert np.all((calibrated >= 0.0) & (calibrated <= 1.0))
    assert np.all(np.diff(calibrated) >= 0.0)

    raw = scorer.raw(trained.X)
    scores = scorer.score(trained.X)
    assert np.all((scores >= 0.0) & (scores <= 1.0))
    order = np.argsort(raw, kind="stable")
    assert np.all(np.diff(scores[order]) >= 0.0)
    np.testing.assert_array_equal(scores, scorer.calibrate(raw))
    # the calibration carries signal: the riskiest rows get a clearly higher probability
    assert scores.max() > 0.5 > scores.min()


def test_empty_batch(scorer: Scorer) -> None:
    assert scorer.score([]).shape == (0,)


def test_level_honours_thresholds(scorer: Scorer) -> None:
    low, mid, high = THRESHOLDS
    assert scorer.level(0.0) == 0
    assert scorer.level(np.nextafter(low, 0)) == 0
    assert scorer.level(low) == 1  # a threshold is the lowest score of its level
    assert scorer.level(np.nextafter(mid, 0)) == 1
    assert scorer.level(mid) == 2
    assert scorer.level(np.nextafter(high, 0)) == 2
    assert scorer.level(high) == 3
    assert scorer.level(1.0) == 3
    levels = [scorer.level(s) for s in np.linspace(0, 1, 501)]
    assert levels == sorted(levels)


# -- batch consistency -----------------------------------------------------------------------------


def test_batch_scoring_equals_row_by_row(scorer: Scorer, trained: Trained) -> None:
    rng = np.random.default_rng(3)
    idx = rng.choice(len(trained.X), size=400, replace=False)
    batch = trained.X[idx]
    scores = scorer.score(batch)
    raw = scorer.raw(batch)
    one_by_one = np.array([scorer.score([row])[0] for row in batch])
    raw_one_by_one = np.array([scorer.raw([tuple(row)])[0] for row in batch])
    np.testing.assert_array_equal(scores, one_by_one)
    np.testing.assert_array_equal(raw, raw_one_by_one)
    # tuples, lists and arrays are the same rows
    rows = [trained.rows[i].values for i in idx[:50]]
    np.testing.assert_array_equal(scorer.score(rows), scores[:50])
    np.testing.assert_array_equal(scorer.score([list(r) for r in rows]), scores[:50])


# -- contributions and reasons ---------------------------------------------------------------------


def test_contributions_sum_to_the_raw_margin(scorer: Scorer, trained: Trained) -> None:
    top = np.argsort(-scorer.raw(trained.X))[:30]
    sample = [*top, *range(0, len(trained.X), max(1, len(trained.X) // 30))]
    for i in sample:
        row = trained.X[i]
        contrib = scorer.contributions(row)
        assert contrib.shape == (len(FEATURE_NAMES),)
        bias = scorer.booster.predict(row.reshape(1, -1), pred_contrib=True)[0, -1]
        margin = scorer.booster.predict(row.reshape(1, -1), raw_score=True)[0]
        assert contrib.sum() + bias == pytest.approx(margin, rel=1e-9, abs=1e-9)


def _assert_plain(sentence: str) -> None:
    assert isinstance(sentence, str)
    assert sentence.strip() == sentence and sentence
    assert "_" not in sentence  # no raw feature names such as sub_calls_24h
    assert "nan" not in sentence.lower().split()
    assert not any(name in sentence for name in FEATURE_NAMES if "_" in name)


def test_reasons_of_the_riskiest_rows_are_plain_sentences(scorer: Scorer, trained: Trained) -> None:
    top = np.argsort(-scorer.raw(trained.X))[:100]
    for i in top:
        row = trained.rows[i].values
        contrib = scorer.contributions(row)
        out = reasons(row, contrib)
        assert 1 <= len(out) <= 3
        assert len(set(out)) == len(out)
        for sentence in out:
            _assert_plain(sentence)


def test_every_mapped_feature_reads_as_plain_text(trained: Trained) -> None:
    # One sentence per feature, on a call row and on a transfer row.
    call_row = next(r.values for r in trained.rows if r.is_call and r.values[FEATURE_INDEX["caller_is_stranger"]])
    transfer_row = next(r.values for r in trained.rows if not r.is_call and r.values[FEATURE_INDEX["payee_new"]])
    for row in (call_row, transfer_row):
        for name in FEATURE_NAMES:
            contrib = np.zeros(len(FEATURE_NAMES))
            contrib[FEATURE_INDEX[name]] = 1.0
            out = reasons(row, contrib)
            if row[FEATURE_INDEX[name]] != row[FEATURE_INDEX[name]]:
                assert out == []  # a missing value is never worded
                continue
            assert len(out) == 1, name
            _assert_plain(out[0])
            assert "sub " not in out[0]


def test_every_feature_has_its_own_sentence() -> None:
    # Any feature can be among an alert's top three; a generic "unusual <name>: N" is no reason to an officer.
    assert [f.name for f in FEATURES] == list(FEATURE_NAMES)
    assert [f.name for f in FEATURES if not callable(f.sentence)] == []
    for row in ([0.0] * len(FEATURE_NAMES), [2.0] * len(FEATURE_NAMES)):
        for feature in FEATURES:
            sentence = feature.sentence(row)
            assert sentence and not sentence.startswith("unusual") and "_" not in sentence, feature.name


def test_window_sentences_name_their_window() -> None:
    row = [0.0] * len(FEATURE_NAMES)
    row[FEATURE_INDEX["sub_stranger_talk_s_1h"]] = 47 * 60
    row[FEATURE_INDEX["sub_new_payee_amount_10m"]] = 48_000
    contrib = np.zeros(len(FEATURE_NAMES))
    contrib[FEATURE_INDEX["sub_stranger_talk_s_1h"]] = 2.0
    contrib[FEATURE_INDEX["sub_new_payee_amount_10m"]] = 1.0
    assert reasons(row, contrib) == [
        "talked 47 min with numbers new to this person in the last hour",
        "sent ¥48,000 to new payees in the last 10 min",
    ]


def test_a_number_seen_for_the_first_time_is_not_worded_as_0_min_ago() -> None:
    row = [0.0] * len(FEATURE_NAMES)
    contrib = np.zeros(len(FEATURE_NAMES))
    contrib[FEATURE_INDEX["caller_known_for_s"]] = 2.0
    contrib[FEATURE_INDEX["caller_age_s"]] = 1.0
    assert reasons(row, contrib) == [
        "this was the first call this person had from the calling number",
        "the calling number was never seen before this call",
    ]
    row[FEATURE_INDEX["caller_known_for_s"]] = 3 * 3600
    row[FEATURE_INDEX["caller_age_s"]] = 2 * 86_400
    assert reasons(row, contrib) == [
        "this person first heard from the calling number 3 h ago",
        "the calling number first appeared 2 days ago",
    ]


def test_reasons_take_the_top_positive_contributors_in_order(trained: Trained) -> None:
    row = next(r.values for r in trained.rows if not r.is_call and r.values[FEATURE_INDEX["payee_new"]])
    contrib = np.zeros(len(FEATURE_NAMES))
    contrib[FEATURE_INDEX["payee_new"]] = 0.9
    contrib[FEATURE_INDEX["amount"]] = 2.0
    contrib[FEATURE_INDEX["transfer_after_suspicious_call"]] = 0.5
    contrib[FEATURE_INDEX["prior_transfers"]] = 0.1
    contrib[FEATURE_INDEX["channel"]] = -3.0
    out = reasons(row, contrib)
    assert len(out) == 3
    assert out[0].startswith("started a ¥")
    assert out[1] == "the payee account was never paid before"
    assert out[2] == "the transfer started within 30 min of a suspicious call"
    assert reasons(row, contrib, top=1) == out[:1]
    assert reasons(row, -np.abs(contrib)) == []  # nothing pushed the score up: nothing to say


def test_reasons_skip_missing_values(trained: Trained) -> None:
    # A transfer row has no call fields; their (NaN) values must not become "took a 0 min call".
    row = next(r.values for r in trained.rows if not r.is_call)
    assert row[FEATURE_INDEX["call_duration_s"]] != row[FEATURE_INDEX["call_duration_s"]]
    contrib = np.zeros(len(FEATURE_NAMES))
    contrib[FEATURE_INDEX["call_duration_s"]] = 5.0
    contrib[FEATURE_INDEX["caller_is_stranger"]] = 4.0
    contrib[FEATURE_INDEX["payee_new"]] = 1.0
    assert reasons(row, contrib) == ["the payee account was never paid before"]


def test_duplicate_sentences_are_said_once(trained: Trained) -> None:
    row = next(r.values for r in trained.rows if not r.is_call and r.values[FEATURE_INDEX["amount_z"]] > 0)
    contrib = np.zeros(len(FEATURE_NAMES))
    contrib[FEATURE_INDEX["amount_z"]] = 2.0
    contrib[FEATURE_INDEX["amount_vs_usual"]] = 1.5  # same wording as amount_z
    contrib[FEATURE_INDEX["payee_new"]] = 1.0
    out = reasons(row, contrib)
    assert out == [
        "the transfer is far larger than this person's usual amounts",
        "the payee account was never paid before",
    ]


# -- budget grid and tasks -------------------------------------------------------------------------

GRID_META = {"budget_thresholds": [[2.0, 0.6], [0.5, 0.9], [10.0, 0.3], [1.0, 0.8]]}  # stored in any order


@pytest.mark.parametrize(
    ("budget", "threshold"),
    [
        (0.1, 0.9),  # below every stored budget: the tightest threshold
        (0.5, 0.9),
        (0.99, 0.9),
        (1.0, 0.8),
        (1.5, 0.8),
        (2.0, 0.6),
        (9.99, 0.6),
        (10.0, 0.3),
        (1000.0, 0.3),
    ],
)
def test_threshold_for_budget_picks_the_largest_budget_not_above(budget: float, threshold: float) -> None:
    assert threshold_for_budget(GRID_META, budget) == threshold


def test_threshold_for_budget_from_a_stored_meta(trained: Trained) -> None:
    meta = trained.registry.get(trained.version).meta  # the grid after a JSON round trip
    assert threshold_for_budget(meta, 1.0) == 0.8
    assert threshold_for_budget(meta, 3.0) == 0.6
    assert isinstance(threshold_for_budget(meta, 3.0), float)


def test_count_tasks_one_per_subscriber_per_episode() -> None:
    a, b = "+8613800000001", "+8613800000002"
    alerts = [
        (a, 5 * HOUR_MS),
        (a, 0),
        (b, HOUR_MS),
        (a, HOUR_MS),
        (a, DAY_MS - 1),  # same episode as the alert at 0
        (a, DAY_MS),  # the episode opened at 0 has ended: a new task
        (a, DAY_MS + 10),
        (b, HOUR_MS),  # same time, same subscriber: one task
        (b, 3 * DAY_MS),
    ]
    assert count_tasks(alerts, DAY_MS) == [(a, 0), (b, HOUR_MS), (a, DAY_MS), (b, 3 * DAY_MS)]
    assert count_tasks([], DAY_MS) == []
    assert count_tasks(iter(alerts), DAY_MS) == count_tasks(alerts, DAY_MS)


def test_count_tasks_episodes_start_at_the_first_alert_not_on_a_grid() -> None:
    a = "+8613800000001"
    alerts = [(a, t) for t in range(0, 10 * HOUR_MS, HOUR_MS)]
    assert count_tasks(alerts, 3 * HOUR_MS) == [(a, 0), (a, 3 * HOUR_MS), (a, 6 * HOUR_MS), (a, 9 * HOUR_MS)]


def test_count_tasks_is_independent_of_input_order() -> None:
    rng = random.Random(11)
    subs = [f"+86138000000{i:02d}" for i in range(8)]
    alerts = [(rng.choice(subs), rng.randrange(0, 5 * DAY_MS)) for _ in range(300)]
    expected = count_tasks(sorted(alerts, key=lambda x: x[1]), DAY_MS)
    for _ in range(5):
        rng.shuffle(alerts)
        got = count_tasks(alerts, DAY_MS)
        assert sorted(got) == sorted(expected)
    # never two tasks for one subscriber within an episode
    last: dict[str, int] = {}
    for sub, at in expected:
        assert at - last.get(sub, -DAY_MS) >= DAY_MS
        last[sub] = at


def test_fixture_model_is_saved_in_the_registry(trained: Trained) -> None:
    version = trained.registry.get(trained.version)
    assert (version.path / "model.txt").exists()
    assert version.meta["features_hash"] == FEATURES_HASH


def test_compiled_model_scores_identically(trained: Trained, tmp_path: Path) -> None:
    """lleaves-compiled predictions match LightGBM's to float precision, and the Scorer uses them."""
    from models.compiled import compile_version, compiled_path

    registry = ModelRegistry(tmp_path / "reg")
    version = registry.register(trained.model_text, trained.meta)
    plain = Scorer(version, compiled=False)
    compile_version(version)
    assert compiled_path(version).exists()
    fast = Scorer(version)
    assert fast.is_compiled and not plain.is_compiled
    assert np.max(np.abs(fast.raw(trained.X) - plain.raw(trained.X))) < 1e-9


def test_live_model_keeps_the_version_it_replaced_for_pending_explanations(trained: Trained, tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path / "models")
    first = registry.register(trained.model_text, trained.meta)
    second = registry.register(trained.model_text, trained.meta)
    registry.promote(first.version)
    live = LiveModel(registry)
    assert live.refresh()
    registry.promote(second.version)
    assert live.refresh()
    assert live.scorer is not None and live.scorer.version == second.version
    old = live.scorer_of(first.version)
    assert old is not None and old.version == first.version
    # A version no longer loaded falls back to the live one rather than leaving an alert unexplained.
    other = live.scorer_of("v-gone")
    assert other is not None and other.version == second.version
