"""``evaluate``'s observable ceiling: a case counts only once one of its calls to the victim has ended."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from core.events import CallEvent, CallStartEvent, Event, TransferEvent
from features.vector import FEATURE_INDEX
from models.dataset import build_dataset
from models.evaluate import OPERATING_RATES, evaluate, evaluate_dataset, first_observable_ms, operating_curve

pytestmark = pytest.mark.unit

T0 = 1_767_225_600_000  # 2026-01-01 00:00 UTC
MIN = 60_000
HOUR = 60 * MIN
FRAUD = "+8617000000001"
FRIEND = "+8613900000009"


def _call(eid: str, ts: int, callee: str, duration_s: int, caller: str = FRAUD) -> CallEvent:
    kind = "voip" if caller == FRAUD else "mobile"
    return CallEvent(eid, ts, caller, callee, duration_s > 0, float(duration_s), kind)


def _pay(eid: str, ts: int, payer: str) -> TransferEvent:
    return TransferEvent(eid, ts, payer, "acct-" + payer, "mule-1", 5_000.0, "CNY", "mobile_app")


def _case(cid: str, victim: str, contact: int, loss: int | None, eids: list[str]) -> dict[str, Any]:
    return {
        "schema": "case.v1",
        "case_id": cid,
        "scenario": "refund" if cid in ("during", "tie") else "investment",
        "victim": victim,
        "fraud_numbers": [FRAUD],
        "first_contact_ms": contact,
        "first_loss_ms": loss,
        "event_ids": eids,
    }


def _city() -> tuple[list[Event], list[dict[str, Any]]]:
    a, b, c, d = (f"+86138000000{i:02d}" for i in range(1, 5))
    events: list[Event] = [
        # A pays 5 min into a 10 min scam call: the call's record only arrives after the loss.
        _call("a-call", T0, a, 600),
        _pay("a-pay", T0 + 5 * MIN, a),
        # A friend's call to A ended before A's loss: not a case call, so it does not make A observable.
        _call("a-friend", T0 - 30 * MIN, a, 120, caller=FRIEND),
        # B pays 30 min after a 2 min scam call ended.
        _call("b-call", T0, b, 120),
        _pay("b-pay", T0 + 30 * MIN, b),
        # C pays at the very millisecond its scam call ends: observable by the loss, not strictly before it.
        _call("c-call", T0, c, 300),
        _pay("c-pay", T0 + 5 * MIN, c),
        # D talked and never paid: no loss, so in no ceiling.
        _call("d-call", T0, d, 900),
    ]
    cases = [
        _case("during", a, T0, T0 + 5 * MIN, ["a-call", "a-pay"]),
        _case("after", b, T0, T0 + 30 * MIN, ["b-call", "b-pay"]),
        _case("tie", c, T0, T0 + 5 * MIN, ["c-call", "c-pay"]),
        _case("refused", d, T0, None, ["d-call"]),
    ]
    return events, cases


def test_observable_counts_only_case_calls_that_ended_by_the_loss() -> None:
    events, cases = _city()
    data = build_dataset(events, cases)
    seen = first_observable_ms(data, cases)
    assert seen == {"during": T0 + 10 * MIN, "after": T0 + 2 * MIN, "tie": T0 + 5 * MIN, "refused": T0 + 15 * MIN}

    # Alerts: B at its scam call's end (before its loss), A at its transfer (by its loss, not before).
    high = {"b-call", "a-pay"}
    scores = np.asarray([0.9 if r.event_id in high else 0.01 for r in data.rows])
    scorer: Any = SimpleNamespace(version="test", thresholds=(0.1, 0.3, 0.5))
    result = evaluate_dataset(data, cases, scorer, scores=scores)

    assert result["cases_with_loss"] == 3
    assert result["cases_observable_by_loss"] == 2  # B, C
    assert result["cases_observable_before_loss"] == 1  # B
    assert (result["cases_flagged_before_loss"], result["cases_flagged_by_loss"]) == (1, 2)
    # A's alert at its own transfer counts as flagged by the loss, but A was never observable from its calls.
    assert result["observable_flagged_by_loss"] == 1
    assert result["observable_flagged_before_loss"] == 1
    refund = result["per_scenario"]["refund"]
    assert (refund["cases_with_loss"], refund["cases_observable_by_loss"], refund["cases_observable_before_loss"]) == (
        2,
        1,
        0,
    )
    assert refund["observable_flagged_by_loss"] == 0
    investment = result["per_scenario"]["investment"]
    assert (investment["cases_observable_by_loss"], investment["observable_flagged_before_loss"]) == (1, 1)


def test_operating_curve_matches_each_false_task_rate_on_the_history() -> None:
    events, cases = _city()
    legit = [f"+86139000001{i:02d}" for i in range(3)]
    events += [_call(f"x{i}", T0, sub, 60, caller=FRIEND) for i, sub in enumerate(legit)]
    data = build_dataset(events, cases)
    ranked = {"x0": 0.95, "b-call": 0.9, "x1": 0.85, "a-pay": 0.8, "x2": 0.75, "c-call": 0.7}
    scores = np.asarray([ranked.get(r.event_id, 0.01) for r in data.rows])
    days = max((data.avail_ms.max() - data.avail_ms.min()) / 86_400_000, 1 / 24)
    one_task = 10_000 / len(set(data.subscribers)) / days  # what one false task adds to the rate
    curve = operating_curve(data, cases, scores, rates=(0.0, one_task, 2 * one_task, 3 * one_task))

    got = [(p["task_threshold"], p["cases_flagged_before_loss"], p["cases_flagged_by_loss"]) for p in curve]
    # No false task at all: nothing may alert. One: down to B's call. Two: down to A's transfer. Three: every
    # legitimate subscriber is already spent, so the threshold falls to the bottom and C counts by its loss.
    assert got == [(None, 0, 0), (0.9, 1, 1), (0.8, 1, 2), (0.01, 1, 3)]
    assert [round(p["false_tasks_per_10k_per_day"] / one_task) for p in curve] == [0, 1, 2, 3]
    # evaluate carries the curve, and its own point agrees with it where the thresholds coincide.
    scorer: Any = SimpleNamespace(version="test", thresholds=(0.1, 0.3, 0.8))
    result = evaluate_dataset(data, cases, scorer, scores=scores)
    assert (result["cases_flagged_before_loss"], result["cases_flagged_by_loss"]) == (1, 2)
    assert result["false_tasks_per_10k_per_day"] == pytest.approx(2 * one_task)
    assert [p["false_tasks_per_10k_per_day_at_most"] for p in result["operating_curve"]] == list(OPERATING_RATES)


def test_missed_cases_are_sorted_by_what_the_service_had_seen_before_the_loss() -> None:
    events, cases = _city()
    e, f, g = (f"+86138000000{i:02d}" for i in range(5, 8))
    events += [
        # E had a 30 s scam call and an unanswered one before paying: sweep-like evidence only.
        _call("e-short", T0, e, 30),
        _call("e-missed", T0 + 10 * MIN, e, 0),
        _pay("e-pay", T0 + 60 * MIN, e),
        # F talked 5 min with the ring an hour before paying: the ranking's miss.
        _call("f-long", T0, f, 300),
        _pay("f-pay", T0 + 65 * MIN, f),
        # G also talked 5 min, but the model alerted on that call: flagged, so not a miss.
        _call("g-long", T0, g, 300),
        _pay("g-pay", T0 + 65 * MIN, g),
    ]
    cases += [
        _case("short", e, T0, T0 + 60 * MIN, ["e-short", "e-missed", "e-pay"]),
        _case("long", f, T0, T0 + 65 * MIN, ["f-long", "f-pay"]),
        _case("caught", g, T0, T0 + 65 * MIN, ["g-long", "g-pay"]),
    ]
    data = build_dataset(events, cases)
    scores = np.asarray([0.9 if r.event_id in {"g-long", "a-pay"} else 0.01 for r in data.rows])
    scorer: Any = SimpleNamespace(version="test", thresholds=(0.1, 0.3, 0.5))
    result = evaluate_dataset(data, cases, scorer, scores=scores)

    # A paid during its first call, C at the millisecond its 5 min call ended (not strictly before), B's 2 min
    # call (at the weak bound) was scored low, as was F's; E had only weak calls; G was caught; D never paid.
    assert result["missed_before_loss"] == {
        "no_case_call_before_loss": 2,
        "only_short_or_unanswered_calls": 1,
        "scored_below_threshold": 2,
    }
    assert result["cases_with_loss"] - result["cases_flagged_before_loss"] == sum(result["missed_before_loss"].values())
    assert result["per_scenario"]["refund"]["missed_before_loss"] == {
        "no_case_call_before_loss": 2,
        "only_short_or_unanswered_calls": 0,
        "scored_below_threshold": 0,
    }


def test_warmup_days_compute_features_over_everything_but_judge_only_what_follows() -> None:
    day = 86_400_000
    early, late, bystander, quiet = (f"+86138000001{i:02d}" for i in range(4))
    events: list[Event] = [
        # Day 0 (warm-up): a case starts and pays; a bystander takes a long call; the ring sweeps 5 people.
        _call("early-call", T0, early, 900),
        _pay("early-pay", T0 + 30 * MIN, early),
        _call("by-0", T0 + HOUR, bystander, 900, caller=FRIEND),
        *(_call(f"sweep{i}", T0 + 2 * HOUR, f"+86137000000{i}", 10) for i in range(5)),
        # Day 2: a new case, and the early victim's later rows; the bystander takes another long call.
        _call("late-call", T0 + 2 * day, late, 900),
        _pay("late-pay", T0 + 2 * day + 30 * MIN, late),
        _call("early-again", T0 + 2 * day, early, 900),
        _call("by-2", T0 + 2 * day + HOUR, bystander, 900, caller=FRIEND),
        _call("quiet-2", T0 + 2 * day, quiet, 20, caller=FRIEND),
    ]
    cases = [
        _case("early", early, T0, T0 + 30 * MIN, ["early-call", "early-pay", "early-again"]),
        _case("late", late, T0 + 2 * day, T0 + 2 * day + 30 * MIN, ["late-call", "late-pay"]),
    ]
    seen_fanout: dict[str, float] = {}

    def score(X: np.ndarray) -> np.ndarray:  # long calls alert; note what the ring's fan-out looked like
        duration, fanout = FEATURE_INDEX["call_duration_s"], FEATURE_INDEX["caller_fanout_7d"]
        seen_fanout["late"] = max((x[fanout] for x in X if x[duration] == 900 and x[fanout] > 1), default=0.0)
        return np.where(X[:, duration] >= 600, 0.9, 0.01)

    scorer: Any = SimpleNamespace(version="test", thresholds=(0.1, 0.3, 0.5), score=score)
    cold = evaluate(events, cases, scorer)
    warm = evaluate(events, cases, scorer, warmup_days=1)

    assert (cold["cases_with_loss"], cold["cases_flagged_before_loss"]) == (2, 2)
    assert cold["false_tasks"] == 2  # the bystander, on day 0 and on day 2
    # After a day of warm-up only the late case is judged; the early victim is neither victim nor false task;
    # the bystander's day-0 call is not judged, its day-2 one is.
    assert (warm["cases"], warm["cases_with_loss"], warm["cases_flagged_before_loss"]) == (1, 1, 1)
    assert warm["false_tasks"] == 1 and warm["tasks"] == 2
    assert warm["warmup_days"] == 1 and "warmup_days" not in cold
    assert warm["subscribers"] == 3  # late, bystander, quiet
    # The features of the judged rows still carry the warm-up's history: the ring had rung 6 people by then.
    assert seen_fanout["late"] == 7


def test_false_tasks_after_fraud_contact_are_counted_apart() -> None:
    swept, innocent, later = "+8613800000201", "+8613800000202", "+8613800000203"
    victim = "+8613800000204"
    events: list[Event] = [
        # The ring's line sweeps: `swept` picks up and talks 4 min, then takes a long call from a friend.
        _call("sweep-1", T0, swept, 240),
        _call("swept-long", T0 + HOUR, swept, 900, caller=FRIEND),
        # `innocent` only ever talks with the friend; the ring's call to `later` comes after its alert.
        _call("inn-long", T0 + HOUR, innocent, 900, caller=FRIEND),
        _call("later-long", T0 + HOUR, later, 900, caller=FRIEND),
        _call("sweep-2", T0 + 3 * HOUR, later, 60),
        # An unanswered ring call is no contact.
        _call("sweep-3", T0, innocent, 0),
        _call("v-call", T0, victim, 900),
        _pay("v-pay", T0 + 30 * MIN, victim),
    ]
    cases = [_case("v", victim, T0, T0 + 30 * MIN, ["v-call", "v-pay"])]
    scorer: Any = SimpleNamespace(
        version="test",
        thresholds=(0.1, 0.3, 0.5),
        score=lambda X: np.where(X[:, FEATURE_INDEX["call_duration_s"]] >= 600, 0.9, 0.01),
    )
    result = evaluate(events, cases, scorer)
    assert result["false_tasks"] == 3
    assert result["false_tasks_after_fraud_contact"] == 1  # only `swept` had talked with the ring first
    per_task = result["false_tasks_per_10k_per_day"] / 3
    assert result["false_tasks_after_fraud_contact_per_10k_per_day"] == pytest.approx(per_task)
    # Without the events' contacts the split is not claimed.
    data = build_dataset(events, cases)
    assert "false_tasks_after_fraud_contact" not in evaluate_dataset(data, cases, scorer)


def test_cases_first_flagged_during_a_signalled_call_are_counted() -> None:
    events, cases = _city()
    # A's scam call is signalled when it connects: A's transfer 5 min in is made on the line with it.
    events.append(CallStartEvent("a-start", "a-call", T0, FRAUD, cases[0]["victim"], "voip"))
    cases[0]["event_ids"].append("a-start")
    data = build_dataset(events, cases)
    pay = next(r for r in data.rows if r.event_id == "a-pay")
    assert pay.values[FEATURE_INDEX["oncall_calls"]] == 1
    scores = np.asarray([0.9 if r.event_id in {"a-pay", "b-call"} else 0.01 for r in data.rows])
    scorer: Any = SimpleNamespace(version="test", thresholds=(0.1, 0.3, 0.5))
    result = evaluate_dataset(data, cases, scorer, scores=scores)
    assert (result["cases_first_flagged_during_call"], result["in_call_alerts"]) == (1, 1)  # A, not B
    assert result["per_scenario"]["refund"]["cases_first_flagged_during_call"] == 1
    assert result["per_scenario"]["investment"]["cases_first_flagged_during_call"] == 0
    # The signalling makes A observable at its call's connect, before its loss.
    assert first_observable_ms(data, cases)["during"] == T0
