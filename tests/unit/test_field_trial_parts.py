"""The field trial's parts: what is known by a cut-off, a model swap in the follower, split per source."""

from __future__ import annotations

import math

import numpy as np
import pytest

from core.events import CallEvent, ReportEvent, TransferEvent
from core.levels import level_budgets
from features import DAY_MS
from models import (
    FollowConfig,
    ModelSwap,
    carry_over,
    cases_from_reported_numbers,
    cases_from_reports,
    follow_offline,
    labels_known_by,
    match_alert_rate,
    unseen_window,
)
from models.train import _split
from sandbox.field_trial import TrialConfig, with_police_feed

pytestmark = pytest.mark.unit

HOUR = 3_600_000


def _report(case_id: str, loss: int | None, **extra: object) -> dict[str, object]:
    return {"case_id": case_id, "victim": "+8613800000001", "event_ids": ["e1"], "first_loss_ms": loss, **extra}


def test_reports_are_known_their_delay_after_the_loss_or_when_made() -> None:
    reports = [
        _report("early", 0),  # known at 3 days
        _report("late", 2 * DAY_MS),  # known at 5 days
        _report("said-so", 4 * DAY_MS, reported_ms=DAY_MS),  # its own reported_ms wins
        _report("no-loss", None),  # nobody reports a loss that never happened
    ]
    got = cases_from_reports(reports, cutoff_ms=4 * DAY_MS, delay_ms=3 * DAY_MS)
    assert sorted(c["case_id"] for c in got.cases) == ["early", "said-so"]
    assert got.summary() == {"used": 2, "not_yet_known": 1, "without_loss": 1}
    assert all(c["source"] == "police_report" for c in got.cases)
    assert len(cases_from_reports(reports, None, 3 * DAY_MS).cases) == 3  # no cut-off: every report with a loss


def test_the_trial_feeds_the_reports_to_the_service_as_they_are_made_unless_the_stream_has_its_own() -> None:
    ring = "+8617000000009"
    cases = [
        {**_report("lost", DAY_MS), "fraud_numbers": [ring]},
        {**_report("said-so", DAY_MS, reported_ms=2 * DAY_MS), "fraud_numbers": [ring]},
        {**_report("no-loss", None), "fraud_numbers": [ring]},
        {**_report("no-number", DAY_MS), "fraud_numbers": []},  # names no line: nothing to feed
    ]
    call = CallEvent("c1", 0, ring, "+8613800000002", True, 300.0, "mobile")
    fed = with_police_feed([call], cases, TrialConfig(report_delay_days=3.0))
    assert fed[0] == call
    assert [(r.event_id, r.ts_ms, r.fraud_numbers) for r in fed[1:] if isinstance(r, ReportEvent)] == [
        ("report:lost", 4 * DAY_MS, (ring,)),
        ("report:said-so", 2 * DAY_MS, (ring,)),
    ]
    assert with_police_feed([call], cases, TrialConfig(live_reports=False)) == [call]
    assert with_police_feed(fed[:2], cases, TrialConfig()) == fed[:2]  # a stream with its own reports keeps them


def test_labels_are_known_from_their_resolution_and_never_without_one() -> None:
    labels = [{"task_id": "a", "resolved_ms": 10}, {"task_id": "b", "resolved_ms": 11}, {"task_id": "c"}]
    kept, late = labels_known_by(labels, 10)
    assert [lb["task_id"] for lb in kept] == ["a"] and late == 2
    assert labels_known_by(labels, None) == (labels, 0)


def test_the_reported_numbers_make_cases_of_whoever_answered_them_long_enough() -> None:
    ring, account = "+8617000000001", "ACC-RING"

    def call(eid: str, callee: str, seconds: float, caller: str = ring, answered: bool = True) -> CallEvent:
        return CallEvent(eid, 1000, caller, callee, answered, seconds, "mobile")

    def pay(eid: str, payer: str, payee: str) -> TransferEvent:
        return TransferEvent(eid, 2000, payer, f"P-{payer}", payee, 500.0, "CNY", "app")

    events = [
        call("c1", "+victim", 600),
        pay("t1", "+victim", account),
        call("c2", "+paid", 200),
        pay("t2", "+paid", account),
        pay("t3", "+paid", "ACC-GROCER"),
        call("c3", "+brief", 60),
        call("c4", "+brief", 119.9),
        call("c5", "+missed", 0, answered=False),
        call("c6", "+talked", 121),
        call("c7", "+other", 900, caller="+8613900000000"),
    ]
    report = {"case_id": "r1", "victim": "+victim", "fraud_numbers": [ring], "event_ids": ["c1", "t1"]}
    got = {c["victim"]: c["event_ids"] for c in cases_from_reported_numbers([report], events)}
    # Two minutes or more on the line with a reported number is a case (the contract), with or without a loss;
    # the payment to the reported account is its, the grocer's is not. The reported victim is already a case.
    assert got == {"+paid": ["c2", "t2"], "+talked": ["c6"]}
    assert cases_from_reported_numbers([], events) == []


def test_carry_over_keeps_the_learnt_offset_in_log_odds() -> None:
    def logit(p: float) -> float:
        return math.log(p / (1 - p))

    config = FollowConfig()
    (moved,) = carry_over((0.99,), (0.9,), (0.5,), config)
    assert logit(moved) == pytest.approx(logit(0.5) + logit(0.99) - logit(0.9))
    (clamped,) = carry_over((0.999999,), (0.5,), (0.5,), FollowConfig(logit_up=2.0))
    assert logit(clamped) == pytest.approx(2.0)  # never past the new model's bounds


def test_a_new_model_takes_over_at_the_live_alert_volume() -> None:
    rng = np.random.default_rng(4)
    live = rng.random(5000)
    # A retrain that ranks alike but scores 3 log-odds lower: at the live thresholds it would alert on far fewer
    # rows, and an offset learnt by the live model says nothing of it.
    new = 1 / (1 + np.exp(-(np.log(live / (1 - live)) - 3.0)))
    thresholds = (0.9, 0.97, 0.995)
    matched = match_alert_rate(live, thresholds, new)
    for was, now in zip(thresholds, matched, strict=True):
        assert int((new >= now).sum()) == int((live >= was).sum()) > 0
    assert list(matched) == sorted(matched)
    # No live alert at a level: none with the new model either.
    (above,) = match_alert_rate(live, (1.5,), new)
    assert not (new >= above).any()
    with pytest.raises(ValueError):
        match_alert_rate(live, thresholds, new[:10])


def _stream(n: int = 6000, seed: int = 5) -> tuple[list[str], np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    subs = [f"+86138{rng.integers(0, 800):08d}" for _ in range(n)]
    avail = np.sort(rng.integers(0, 6 * DAY_MS, n)).astype(np.int64)
    scores = 1 / (1 + np.exp(-rng.normal(1.0, 2.5, n)))  # far above the training scores: the follower must act
    return subs, avail, scores


def _follow(scores: np.ndarray, base: tuple[float, ...], swaps: list[ModelSwap], subs: list[str], avail: np.ndarray):  # type: ignore[no-untyped-def]
    return follow_offline(
        subs,
        avail,
        scores,
        base,
        level_budgets(1.0),
        800,
        lambda sub: not sub.endswith("7"),
        task_level=len(base),
        swaps=swaps,
    )


def test_a_swap_to_the_same_model_changes_no_decision() -> None:
    subs, avail, scores = _stream()
    base = (0.6, 0.8, 0.9)
    alone = _follow(scores, base, [], subs, avail)
    swapped = _follow(scores, base, [ModelSwap(3 * DAY_MS, base, None, scores)], subs, avail)
    assert alone.tasks > 0 and len(alone.history) > 3  # the stream is one the follower has to follow
    assert np.array_equal(alone.levels, swapped.levels)


def test_a_swap_to_a_model_shifted_in_log_odds_decides_alike() -> None:
    # A new model scoring every row 2 log-odds higher, with thresholds 2 higher, is the same model: the carried
    # thresholds and the re-scored window must give the very same decisions after the swap.
    subs, avail, scores = _stream()
    base = (0.6, 0.8, 0.9)

    def shift(p: np.ndarray | float) -> np.ndarray:
        x = np.log(np.asarray(p) / (1 - np.asarray(p)))
        return np.asarray(1 / (1 + np.exp(-(x + 2.0))))

    new_base = tuple(float(shift(b)) for b in base)
    alone = _follow(scores, base, [], subs, avail)
    swapped = _follow(scores, base, [ModelSwap(3 * DAY_MS, new_base, None, shift(scores))], subs, avail)
    differ = int((alone.levels != swapped.levels).sum())
    assert differ <= 2, f"{differ} rows decided differently (float ties at most)"
    # ...while resetting to the new model's own thresholds (no carry-over) is a different service.
    reset = _follow(scores, base, [ModelSwap(3 * DAY_MS, new_base, None, scores)], subs, avail)
    assert int((alone.levels != reset.levels).sum()) > differ


def test_a_retrain_that_learnt_the_window_counts_only_the_rows_it_never_saw() -> None:
    # A retrain on the city's outcomes scores the rows it trained on (all before the swap) far lower: re-scored,
    # the window would look underspent. Told what it learnt, the follower's windows hold only later rows, so how it
    # scores the rows it learnt changes nothing it decides; not told, those rows move its thresholds.
    subs, avail, scores = _stream()
    base = (0.6, 0.8, 0.9)
    at = 3 * DAY_MS
    live = [t for when, t in _follow(scores, base, [], subs, avail).history if when <= at][-1]
    x = np.log(scores / (1 - scores))

    def after_swap(learnt: int | None, shift: float) -> list[tuple[int, tuple[float, ...]]]:
        retrain = np.where(avail < at, 1 / (1 + np.exp(-(x + shift))), scores)
        run = _follow(scores, base, [ModelSwap(at, live, None, retrain, False, learnt_until_ms=learnt)], subs, avail)
        return [(when, t) for when, t in run.history if when >= at]

    assert after_swap(at, -4.0) == after_swap(at, 0.0) == after_swap(at, 2.0)
    assert after_swap(None, -4.0) != after_swap(None, 0.0)
    assert unseen_window(at + DAY_MS, 0, (DAY_MS, 4 * DAY_MS), at) == ([at, at], DAY_MS)
    assert unseen_window(at + 5 * DAY_MS, 0, (DAY_MS, 4 * DAY_MS), at) == ([at + 4 * DAY_MS, at + DAY_MS], 5 * DAY_MS)
    assert unseen_window(at + DAY_MS, 0, (DAY_MS, 4 * DAY_MS), None) == ([at, 0], at + DAY_MS)


def test_the_split_cuts_each_source_on_its_own_calendar() -> None:
    avail = np.concatenate([np.arange(0, 100), np.arange(10_000, 10_100)])
    parts = np.concatenate([np.zeros(100, dtype=np.int8), np.ones(100, dtype=np.int8)])
    train, _, calib = _split(avail, (0.6, 0.75), parts)
    for part in (0, 1):
        mine = parts == part
        assert 55 <= int((train & mine).sum()) <= 62 and int((calib & mine).sum()) >= 24
    pooled_train, _, _ = _split(avail, (0.6, 0.75))
    assert int((pooled_train & (parts == 1)).sum()) == 0  # one calendar: the later source is never trained on
