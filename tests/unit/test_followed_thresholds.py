"""The followed thresholds: they bring false visits within budget on a shifted stream and keep recall on a
stream with thirty times the victims."""

from __future__ import annotations

import math

import numpy as np
import pytest

from core.levels import level_budgets
from models.episodes import count_tasks
from models.feedback import FollowConfig, false_share, follow_offline, follow_thresholds

pytestmark = pytest.mark.unit

DAY_MS = 86_400_000
RESIDENTS = 10_000
# The model's own thresholds, fitted where legitimate rows score logit ~ N(-7, 1.5), three rows a day each:
# about 30, 5 and 1 false alerts per 10k per day at levels 1, 2, 3.
BASE = tuple(1 / (1 + math.exp(-x)) for x in (-2.37, -1.6, -1.0))
BUDGETS = level_budgets(1.0)


def _stream(
    seed: int, days: int, victims_per_10k_per_day: float, shift: float
) -> tuple[list[str], np.ndarray, np.ndarray, set[str]]:
    """Residents' rows in time order; victims get two rows scored around logit 0; all shifted by ``shift``."""
    rng = np.random.default_rng(seed)
    n_legit = RESIDENTS * days * 3
    subs = [f"r{i}" for i in rng.integers(0, RESIDENTS, n_legit)]
    logits = list(rng.normal(-7.0, 1.5, n_legit))
    times = list(rng.uniform(0, days * DAY_MS, n_legit))
    n_victims = int(victims_per_10k_per_day * RESIDENTS / 10_000 * days)
    victims = {f"v{i}" for i in range(n_victims)}
    for v in sorted(victims):
        t0 = rng.uniform(0, days * DAY_MS - 3_600_000)
        for k in range(2):
            subs.append(v)
            logits.append(rng.normal(0.0, 1.0))
            times.append(t0 + k * 1_200_000)
    order = np.argsort(times, kind="stable")
    scores = 1 / (1 + np.exp(-(np.asarray(logits)[order] + shift)))
    return [subs[i] for i in order], np.asarray(times)[order].astype(np.int64), scores, victims


def _false_rate_on_day(subs, avail, task_rows: np.ndarray, victims: set[str], day: int) -> float:
    alerts = [(subs[i], int(avail[i])) for i in np.nonzero(task_rows)[0]]
    tasks = count_tasks(alerts, DAY_MS)
    false = [1 for sub, at in tasks if sub not in victims and day * DAY_MS <= at < (day + 1) * DAY_MS]
    return len(false) * 10_000 / RESIDENTS


def _recall(subs, task_rows: np.ndarray, victims: set[str]) -> float:
    hit = {subs[i] for i in np.nonzero(task_rows)[0]} & victims
    return len(hit) / len(victims)


def _follow(subs, avail, scores, victims):
    return follow_offline(
        subs, avail, scores, BASE, BUDGETS, RESIDENTS, lambda s: s not in victims, task_level=3, config=FollowConfig()
    )


def test_false_visits_come_back_within_budget_on_a_far_shifted_stream() -> None:
    subs, avail, scores, victims = _stream(seed=3, days=3, victims_per_10k_per_day=12, shift=2.5)
    static = scores >= BASE[2]
    followed = _follow(subs, avail, scores, victims)
    # At the model's own threshold this stream would flood the responders...
    assert _false_rate_on_day(subs, avail, static, victims, 2) > 50
    # ...followed, the second and third days are within the budget of one false visit per 10k per day.
    task_rows = followed.levels >= 3
    assert _false_rate_on_day(subs, avail, task_rows, victims, 1) <= 1.0
    assert _false_rate_on_day(subs, avail, task_rows, victims, 2) <= 1.0
    # It moved up, and it still reaches victims (who were shifted too).
    assert followed.history[-1][1][2] > BASE[2]
    assert _recall(subs, task_rows, victims) > 0.5


def _recall_on_day(subs, avail, task_rows: np.ndarray, victims: set[str], day: int) -> float:
    on_day = (avail >= day * DAY_MS) & (avail < (day + 1) * DAY_MS)
    theirs = {subs[i] for i in np.nonzero(on_day)[0]} & victims
    hit = {subs[i] for i in np.nonzero(task_rows & on_day)[0]} & theirs
    return len(hit) / len(theirs)


def test_thirty_times_the_victims_keep_their_recall() -> None:
    subs, avail, scores, victims = _stream(seed=5, days=3, victims_per_10k_per_day=360, shift=0.0)
    static = scores >= BASE[2]
    followed = _follow(subs, avail, scores, victims)
    task_rows = followed.levels >= 3
    # Only false visits spend the budget: once the first outcomes say the tasks were true, the threshold comes
    # back down, and by the third day it reaches nearly every victim the model's own threshold does. (A cap
    # on all tasks at one per 10k per day would reach about one victim in 360.)
    assert _recall_on_day(subs, avail, task_rows, victims, 2) >= 0.8 * _recall_on_day(subs, avail, static, victims, 2)
    assert _recall(subs, task_rows, victims) > 0.4
    assert _false_rate_on_day(subs, avail, task_rows, victims, 2) <= 1.0


def test_thresholds_stay_within_their_bounds_and_in_level_order() -> None:
    config = FollowConfig(min_span_ms=0)
    empty = [{} for _ in BASE]
    # Nothing scored for ten days: every level explores down to its lower bound; a flood of false alerts
    # sends every level to its upper bound.
    low = follow_thresholds(BASE, BUDGETS, BASE, empty, {}, 0.9, RESIDENTS, 10 * DAY_MS, 10 * DAY_MS, config)
    flood = {f"s{i}": 0.999999 for i in range(1000)}
    high = follow_thresholds(BASE, BUDGETS, BASE, [flood] * 3, {}, 0.9, RESIDENTS, DAY_MS, 600_000, config)
    for b, lo, hi in zip(BASE, low, high, strict=True):
        x = math.log(b / (1 - b))
        assert lo == pytest.approx(1 / (1 + math.exp(-(x - config.logit_down))))
        assert hi == pytest.approx(1 / (1 + math.exp(-(x + config.logit_up))))
    assert list(low) == sorted(low) and list(high) == sorted(high)


def test_known_outcomes_weigh_exactly_and_an_overspent_level_jumps_to_its_fit() -> None:
    config = FollowConfig(min_span_ms=0, aim=1.0, logit_down=20, logit_up=20)
    best = {f"s{i}": 0.9 - i * 0.01 for i in range(10)}  # s0 0.90, s1 0.89, ... s9 0.81
    step = (best, DAY_MS, 600_000, config)

    def fit(known: dict[str, bool]) -> float:
        # One level, budget 1 per 10k per day, 10k residents, one day: one false alert fits.
        window, span, elapsed, cfg = step
        return follow_thresholds((0.5,), (1.0,), (0.5,), [window], known, 1.0, RESIDENTS, span, elapsed, cfg)[0]

    every_one_false = {sub: True for sub in best}
    assert 0.89 < fit(every_one_false) <= 0.90  # only s0 fits
    # s0 and s1 were victims: they weigh nothing, so s2 is the one false alert the budget allows.
    assert 0.87 < fit({**every_one_false, "s0": False, "s1": False}) <= 0.88
    # Too little traffic yet: the model's own threshold.
    early = FollowConfig(min_span_ms=3_600_000)
    assert follow_thresholds((0.5,), (1.0,), (0.7,), [best], {}, 1.0, RESIDENTS, 60_000, 0, early) == (0.5,)


def test_an_underspent_level_steps_down_at_its_pace_and_holds_in_between() -> None:
    config = FollowConfig(min_span_ms=0, logit_down_per_day=2.0, explore_pace_max=1.0)
    prev = 1 / (1 + math.exp(-1.0))  # logit 1
    # Nothing above the threshold in a day of a 10k city: a day's step is 2 log-odds.
    down = follow_thresholds((prev,), (1.0,), (prev,), [{}], {}, 0.5, RESIDENTS, DAY_MS, DAY_MS // 4, config)[0]
    assert math.log(down / (1 - down)) == pytest.approx(1.0 - 0.5)
    # About the allowance (one false alert known above the threshold, 0.8 allowed): it holds.
    held = follow_thresholds(
        (prev,), (1.0,), (prev,), [{"a": 0.9}], {"a": True}, 0.5, RESIDENTS, DAY_MS, DAY_MS // 4, config
    )[0]
    assert held == pytest.approx(prev)


def test_false_share_starts_at_the_prior_and_follows_outcomes() -> None:
    config = FollowConfig(prior_false_share=0.9, prior_weight=10, outcome_memory=100)
    assert false_share([], config) == pytest.approx(0.9)
    assert false_share([False] * 90, config) == pytest.approx(9 / 100)
    # Only the most recent outcomes count.
    assert false_share([True] * 500 + [False] * 100, config) == pytest.approx(9 / 110)


def test_connects_never_make_a_task_nor_spend_the_visits_budget() -> None:
    subs, avail, scores, victims = _stream(seed=5, days=2, victims_per_10k_per_day=12, shift=2.5)
    as_calls = _follow(subs, avail, scores, victims)
    kinds = ["call_start.v1"] * len(subs)
    as_connects = follow_offline(
        subs, avail, scores, BASE, BUDGETS, RESIDENTS, lambda s: s not in victims, task_level=3, kinds=kinds
    )
    assert (as_calls.levels >= 3).any()
    assert as_connects.levels.max() <= 2 and as_connects.tasks == 0
    # On a flooding stream calls push the task threshold up; connects spend none of its budget...
    assert max(th[2] for _, th in as_connects.history) <= BASE[2]
    assert max(th[2] for _, th in as_calls.history) > BASE[2]
    # ...but they do spend the warnings' and calls' budgets, which they can reach: a flood of connects no longer
    # warns everyone on the line (the visit threshold may then sit below theirs, core.levels.decide_level).
    last = as_connects.history[-1][1]
    assert last[0] > BASE[0] and last[1] > BASE[1] and last[1] >= last[0]
    second_day = np.nonzero((as_connects.levels >= 1) & (avail >= DAY_MS))[0]
    warned = {subs[i] for i in second_day} - victims
    flooded = {subs[i] for i in np.nonzero((scores >= BASE[0]) & (avail >= DAY_MS))[0]} - victims
    # Per 10k on the second day: near the warnings' budget (the first day's flood is still in the window),
    # against ten times that at the model's own threshold.
    assert len(warned) * 10_000 / RESIDENTS < 1.5 * level_budgets(1.0)[0] < len(flooded) * 10_000 / RESIDENTS / 10


def test_the_hold_threshold_follows_its_own_budget_of_false_holds() -> None:
    subs, avail, scores, victims = _stream(seed=5, days=3, victims_per_10k_per_day=12, shift=2.5)
    rng = np.random.default_rng(9)
    # A third of the residents' rows are transfers, and every victim's second row (the loss).
    transfers = rng.random(len(subs)) < 1 / 3
    seen: set[str] = set()
    for i, sub in enumerate(subs):
        if sub in victims:
            transfers[i] = sub in seen
            seen.add(sub)
    hold_base = BASE[1]
    followed = follow_offline(
        subs,
        avail,
        scores,
        BASE,
        BUDGETS,
        RESIDENTS,
        lambda s: s not in victims,
        task_level=3,
        config=FollowConfig(),
        hold_base=hold_base,
        hold_budget=2.0,
        transfers=transfers,
    )
    assert followed.held is not None

    def false_holds_on_day(held: np.ndarray, day: int) -> float:
        rows = [
            i for i in np.nonzero(held)[0] if subs[i] not in victims and day * DAY_MS <= avail[i] < (day + 1) * DAY_MS
        ]
        return len(rows) * 10_000 / RESIDENTS

    static = transfers & (scores >= hold_base) & (scores >= BASE[0])
    assert false_holds_on_day(static, 2) > 50  # at the model's own hold threshold the bank would be flooded
    # Followed, the last day's false holds are within the target of 3 per 10k per day (budget 2, aim 0.8)...
    assert false_holds_on_day(followed.held, 2) <= 3.0
    assert followed.hold_history[-1][1] > hold_base
    # ...a hold only rides on an alert, and victims' losses are still held (fewer than at the static threshold:
    # it explores down from its jump at 1-2 log-odds a day, as the levels do).
    assert not (followed.held & (followed.levels < 1)).any()
    losses = [i for i in np.nonzero(transfers)[0] if subs[i] in victims]
    assert sum(bool(followed.held[i]) for i in losses) / len(losses) > 0.25
