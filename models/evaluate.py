"""``evaluate``: the serving features and scorer over a history, offline, judged against the cases."""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

import numpy as np
from sklearn.metrics import average_precision_score

from core.events import CallEvent, Event
from core.levels import decide_levels, level_budgets, level_caps
from core.settings import Settings
from features import DAY_MS, FEATURE_INDEX, available_at
from models.dataset import Dataset, build_dataset
from models.episodes import count_tasks
from models.feedback import FollowConfig, FollowResult, follow_offline
from models.scoring import Scorer
from models.train import false_task_rate, lowest_threshold_within

TASK_LEVEL = 3
# How long after a task its outcome comes back (a responder visits, then records it), in ``evaluate``'s replay.
OUTCOME_DELAY_MS = 4 * 3_600_000
# False face-to-face tasks per 10k subscribers per day at which ``operating_curve`` reports the cases reached.
OPERATING_RATES = (0.5, 1.0, 2.0, 5.0, 10.0, 30.0)
# An unanswered case call, or one shorter than this, is what a ring's lines give many people every day in their
# sweeps (most hang up within a minute); a victim who had nothing more is hard to tell from those people.
WEAK_CALL_S = 120
# Why a case with a loss was not flagged strictly before it, from the evidence the service had by then.
MISS_REASONS = (
    "no_case_call_before_loss",  # the money moved during the first scam call: its record arrives later
    "only_short_or_unanswered_calls",  # what the victim had looks like any sweep call
    "scored_below_threshold",  # an answered call of at least WEAK_CALL_S had ended: the ranking missed it
)


def _lead_times(cases: list[dict[str, Any]], alerts_by_sub: dict[str, list[int]]) -> tuple[int, int, list[float]]:
    """Cases (with a loss) flagged by the loss, flagged strictly before it, and those cases' lead times in s."""
    before = by = 0
    leads: list[float] = []
    for case in cases:
        loss = case.get("first_loss_ms")
        if loss is None:
            continue
        times = [t for t in alerts_by_sub.get(case["victim"], []) if case["first_contact_ms"] <= t <= loss]
        if times:
            by += 1
            first = min(times)
            if first < loss:
                before += 1
                leads.append((loss - first) / 1000)
    return by, before, leads


def _alerts_by_subscriber(data: Dataset, scores: np.ndarray, threshold: float) -> dict[str, list[int]]:
    subs = data.subscribers
    out: dict[str, list[int]] = defaultdict(list)
    for i in np.nonzero(scores >= threshold)[0]:
        out[subs[i]].append(int(data.avail_ms[i]))
    return out


def operating_curve(
    data: Dataset,
    cases: list[dict[str, Any]],
    scores: np.ndarray,
    episode_ms: int = DAY_MS,
    rates: Iterable[float] = OPERATING_RATES,
    residents: int | None = None,
) -> list[dict[str, Any]]:
    """Cases reached if the task threshold spent each false-task rate in ``rates`` on exactly this history.

    The threshold is matched on the evaluated data itself (an oracle a live model never has), so the curve
    tells separation from threshold choice: how much budget the targets would take at this ranking. Rates
    are per 10k ``residents`` when given, else per distinct subscriber seen.
    """
    victims = {c["victim"] for c in cases}
    subs = data.subscribers
    # The search counts per distinct subscriber seen; a per-resident rate is that times distinct / residents.
    per_resident = len(set(subs)) / residents if residents else 1.0
    with_loss = [c for c in cases if c.get("first_loss_ms") is not None]
    out: list[dict[str, Any]] = []
    for target in rates:
        # None: even the highest score spends more than ``target``, so nothing may alert.
        threshold = lowest_threshold_within(scores, subs, data.avail_ms, victims, target / per_resident, episode_ms)
        alerts: dict[str, list[int]] = {}
        spent = 0.0
        if threshold is not None:
            alerts = _alerts_by_subscriber(data, scores, threshold)
            spent = false_task_rate(scores, subs, data.avail_ms, victims, threshold, episode_ms) * per_resident
        by, before, leads = _lead_times(with_loss, alerts)
        out.append(
            {
                "false_tasks_per_10k_per_day_at_most": target,
                "task_threshold": threshold,
                "false_tasks_per_10k_per_day": spent,
                "cases_with_loss": len(with_loss),
                "cases_flagged_before_loss": before,
                "cases_flagged_by_loss": by,
                "median_lead_time_s": statistics.median(leads) if leads else None,
            }
        )
    return out


def fraud_contacts(events: Iterable[Event], cases: list[dict[str, Any]]) -> dict[str, list[int]]:
    """Per subscriber, when each answered call from a number that some case names as a fraud number ended.

    A ring's lines call many more people than become cases (its sweeps); those who picked up and talked are
    in no case, so a task for them counts as false, yet it is a visit to someone a ring has spoken to.
    """
    numbers = {number for case in cases for number in case.get("fraud_numbers", ())}
    out: dict[str, list[int]] = defaultdict(list)
    for event in events:
        if isinstance(event, CallEvent) and event.answered and event.caller in numbers:
            out[event.callee].append(available_at(event))
    return {sub: sorted(times) for sub, times in out.items()}


def victim_case_calls(data: Dataset, cases: list[dict[str, Any]]) -> dict[str, list[int]]:
    """Per case id, the row numbers of the case's calls to its victim (a case without any is left out)."""
    calls = {r.event_id: i for i, r in enumerate(data.rows) if r.is_call}
    out: dict[str, list[int]] = {}
    for case in cases:
        rows = [calls[e] for e in case["event_ids"] if e in calls and data.rows[calls[e]].subscriber == case["victim"]]
        if rows:
            out[case["case_id"]] = rows
    return out


def first_observable_ms(
    data: Dataset, cases: list[dict[str, Any]], case_calls: dict[str, list[int]] | None = None
) -> dict[str, int]:
    """Per case id, when the first call of the case to its victim ended (its row became known).

    That is the earliest moment the service can know of the scam from its calls; a loss at or before it is
    beyond any model that scores calls (the transfer itself is still seen at ``first_loss_ms``).
    ``case_calls``: :func:`victim_case_calls` of the same data and cases, when already at hand.
    """
    case_calls = victim_case_calls(data, cases) if case_calls is None else case_calls
    return {case_id: min(data.rows[i].avail_ms for i in rows) for case_id, rows in case_calls.items()}


def miss_reasons(
    data: Dataset,
    cases: list[dict[str, Any]],
    alerts_by_sub: dict[str, list[int]],
    case_calls: dict[str, list[int]] | None = None,
) -> dict[str, str]:
    """Per case id of a case with a loss that no alert reached strictly before it, one of ``MISS_REASONS``."""
    case_calls = victim_case_calls(data, cases) if case_calls is None else case_calls
    duration, answered = FEATURE_INDEX["call_duration_s"], FEATURE_INDEX["call_answered"]
    out: dict[str, str] = {}
    for case in cases:
        loss = case.get("first_loss_ms")
        if loss is None:
            continue
        if any(case["first_contact_ms"] <= t < loss for t in alerts_by_sub.get(case["victim"], [])):
            continue
        before = [i for i in case_calls.get(case["case_id"], []) if data.rows[i].avail_ms < loss]
        if not before:
            out[case["case_id"]] = MISS_REASONS[0]
        elif all(data.X[i, answered] != 1.0 or data.X[i, duration] < WEAK_CALL_S for i in before):
            out[case["case_id"]] = MISS_REASONS[1]
        else:
            out[case["case_id"]] = MISS_REASONS[2]
    return out


def _reason_counts(cases: list[dict[str, Any]], reasons: dict[str, str]) -> dict[str, int]:
    counts = dict.fromkeys(MISS_REASONS, 0)
    for case in cases:
        reason = reasons.get(case["case_id"])
        if reason is not None:
            counts[reason] += 1
    return counts


def _observable(case: dict[str, Any], first_seen: dict[str, int], strictly: bool) -> bool:
    seen = first_seen.get(case["case_id"])
    loss = case["first_loss_ms"]
    return seen is not None and (seen < loss if strictly else seen <= loss)


def _first_flagged_during_call(
    cases: list[dict[str, Any]], alerts_by_sub: dict[str, list[int]], in_call: set[tuple[str, int]]
) -> int:
    """Cases with a loss whose first task-level alert (by the loss) came while the victim was on a call."""
    count = 0
    for case in cases:
        loss = case.get("first_loss_ms")
        if loss is None:
            continue
        times = [t for t in alerts_by_sub.get(case["victim"], []) if case["first_contact_ms"] <= t <= loss]
        count += bool(times) and (case["victim"], min(times)) in in_call
    return count


def _case_figures(
    cases: list[dict[str, Any]],
    alerts_by_sub: dict[str, list[int]],
    first_seen: dict[str, int] | None = None,
    reasons: dict[str, str] | None = None,
    in_call: set[tuple[str, int]] | None = None,
) -> dict[str, Any]:
    with_loss = [c for c in cases if c.get("first_loss_ms") is not None]
    by, before, leads = _lead_times(with_loss, alerts_by_sub)
    figures: dict[str, Any] = {
        "cases": len(cases),
        "cases_with_loss": len(with_loss),
        "cases_flagged_before_loss": before,
        "cases_flagged_by_loss": by,
        "share_flagged_before_loss": before / len(with_loss) if with_loss else None,
        "share_flagged_by_loss": by / len(with_loss) if with_loss else None,
        "median_lead_time_s": statistics.median(leads) if leads else None,
    }
    if first_seen is not None:
        # Optional extras: the cases whose scam was observable (a case call had ended) by / before the loss,
        # and how many of those were flagged by / before it: "flagged X of Y observable".
        obs_by = [c for c in with_loss if _observable(c, first_seen, strictly=False)]
        obs_before = [c for c in with_loss if _observable(c, first_seen, strictly=True)]
        figures.update(
            {
                "cases_observable_by_loss": len(obs_by),
                "cases_observable_before_loss": len(obs_before),
                "observable_flagged_by_loss": _lead_times(obs_by, alerts_by_sub)[0],
                "observable_flagged_before_loss": _lead_times(obs_before, alerts_by_sub)[1],
            }
        )
    if reasons is not None:
        # Optional extra: the cases not flagged strictly before the loss, by what the service had seen by then.
        figures["missed_before_loss"] = _reason_counts(with_loss, reasons)
    if in_call is not None:
        # Optional extra: flagged while on the line with the scam (signalling), when an interruption can help.
        figures["cases_first_flagged_during_call"] = _first_flagged_during_call(with_loss, alerts_by_sub, in_call)
    return figures


def held_rows(data: Dataset, scores: np.ndarray, hold_threshold: float | None, alerting: np.ndarray) -> np.ndarray:
    """Per row, whether the service holds it: a transfer at or above the hold threshold that reached an alert.

    ``alerting``: per row, whether it reached level 1 (a hold rides on an alert, see ``streams.agents``).
    """
    if hold_threshold is None or not len(data.rows):
        return np.zeros(len(data.rows), dtype=bool)
    return np.asarray(data.transfers & alerting & (scores >= hold_threshold), dtype=bool)


def cases_held_at_loss(data: Dataset, cases: list[dict[str, Any]], held: np.ndarray) -> set[str]:
    """Ids of the cases whose first fraudulent transfer (the case's transfer at ``first_loss_ms``) was held."""
    row_of = {data.rows[i].event_id: i for i in np.nonzero(data.transfers)[0]}
    out: set[str] = set()
    for case in cases:
        loss = case.get("first_loss_ms")
        if loss is None:
            continue
        for event_id in case["event_ids"]:
            i = row_of.get(event_id)
            if (
                i is not None
                and held[i]
                and data.rows[i].avail_ms == loss
                and data.rows[i].subscriber == case["victim"]
            ):
                out.add(case["case_id"])
                break
    return out


def _hold_case_figures(
    cases: list[dict[str, Any]], alerts_by_sub: dict[str, list[int]], held_cases: set[str]
) -> dict[str, Any]:
    """Cases with a loss held at it, and stopped: flagged strictly before the loss, or held at it."""
    stopped = 0
    for case in cases:
        loss = case.get("first_loss_ms")
        if loss is None:
            continue
        before = any(case["first_contact_ms"] <= t < loss for t in alerts_by_sub.get(case["victim"], []))
        stopped += int(before or case["case_id"] in held_cases)
    return {"cases_held_at_loss": sum(1 for c in cases if c["case_id"] in held_cases), "cases_stopped": stopped}


def after_warmup(
    data: Dataset, cases: list[dict[str, Any]], warmup_days: float
) -> tuple[Dataset, list[dict[str, Any]]]:
    """The rows and cases to judge once the features have ``warmup_days`` of history behind them.

    Features are still computed over every event; only the judging starts later. A case whose first contact
    falls in the warm-up is half-seen: its victim is judged neither as a victim nor as a false task.
    """
    if warmup_days <= 0 or not len(data.rows):
        return data, cases
    keep, judged = judged_after_warmup(data, cases, warmup_days)
    return data.subset(keep), judged


def judged_after_warmup(
    data: Dataset, cases: list[dict[str, Any]], warmup_days: float
) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """:func:`after_warmup` as a row mask (to cut scores already computed) and the cases to judge."""
    if warmup_days <= 0 or not len(data.rows):
        return np.ones(len(data.rows), dtype=bool), cases
    start = int(data.avail_ms.min()) + int(warmup_days * DAY_MS)
    judged = [c for c in cases if c["first_contact_ms"] >= start]
    half_seen = {c["victim"] for c in cases if c["first_contact_ms"] < start}
    keep = np.asarray([r.avail_ms >= start and r.subscriber not in half_seen for r in data.rows], dtype=bool)
    return keep, judged


def followed_levels(
    data: Dataset,
    cases: list[dict[str, Any]],
    scorer: Scorer,
    scores: np.ndarray,
    residents: int,
    budget: float,
    episode_ms: int = DAY_MS,
    config: FollowConfig | None = None,
    outcome_delay_ms: int = OUTCOME_DELAY_MS,
    hold_budget: float | None = None,
) -> FollowResult:
    """Each row's level (and hold) as the service decides it: thresholds following outcomes simulated from
    the cases.

    A task for a subscriber who is the victim of no case comes back ``false_alarm`` ``outcome_delay_ms``
    after it was opened; any other comes back as not false. The hold threshold follows its own budget
    (``hold_budget`` false holds per 10k per day; None: the ``FW_BUDGET_HOLDS_PER_10K_PER_DAY`` default).
    """
    victims = {c["victim"] for c in cases}
    if hold_budget is None:
        hold_budget = float(Settings.model_fields["budget_holds_per_10k_per_day"].default)
    return follow_offline(
        data.subscribers,
        data.avail_ms,
        scores,
        scorer.thresholds,
        level_budgets(budget),
        residents,
        lambda sub: sub not in victims,
        task_level=TASK_LEVEL,
        kinds=data.kinds,
        episode_ms=episode_ms,
        outcome_delay_ms=outcome_delay_ms,
        config=config,
        hold_base=getattr(scorer, "hold_threshold", None),  # a stand-in scorer may have none: no holds
        hold_budget=hold_budget,
        transfers=data.transfers,
    )


def distinct_people(data: Dataset) -> int:
    """Distinct callees and payers seen: the stand-in for residents when their number is not given."""
    return max(len(set(data.subscribers)), 1)


def evaluate(
    events: Iterable[Event],
    cases: list[dict[str, Any]],
    scorer: Scorer,
    episode_ms: int = DAY_MS,
    threshold: float | None = None,
    warmup_days: float = 0.0,
    residents: int | None = None,
    budget: float = 1.0,
    follow: FollowConfig | None = None,
    outcome_delay_ms: int = OUTCOME_DELAY_MS,
    hold_budget: float | None = None,
) -> dict[str, Any]:
    """The contract's evaluation object; ``threshold`` overrides the model's task-level threshold.

    ``warmup_days``: judge only what follows the first days, so that callers and subscribers have a history
    (a live service has months of it; a simulated city starts from nothing). With ``follow`` (and no
    ``threshold``) the thresholds follow simulated outcomes as the service's do, from its first event.
    """
    events = list(events)
    everything = build_dataset(events, cases)
    scores = scorer.score(everything.X) if len(everything.rows) else np.zeros(0)
    people = residents or distinct_people(everything)
    followed = None
    if follow is not None and threshold is None:
        followed = followed_levels(
            everything, cases, scorer, scores, people, budget, episode_ms, follow, outcome_delay_ms, hold_budget
        )
    keep, judged = judged_after_warmup(everything, cases, warmup_days)
    data = everything.subset(keep) if warmup_days > 0 else everything
    result = evaluate_dataset(
        data,
        judged,
        scorer,
        episode_ms,
        threshold,
        scores=scores[keep] if warmup_days > 0 else scores,
        contacts=fraud_contacts(events, cases),
        residents=residents,
        levels=None if followed is None else followed.levels[keep],
        held=None if followed is None or followed.held is None else followed.held[keep],
    )
    if followed is not None:
        result["thresholds_followed"] = followed_summary(followed, outcome_delay_ms)
    if warmup_days > 0:
        result["warmup_days"] = warmup_days
    return result


def followed_summary(followed: FollowResult, outcome_delay_ms: int) -> dict[str, Any]:
    """What the follower did, for the evaluation object: the task threshold's path and the outcomes it saw."""
    task = [(at, th[TASK_LEVEL - 1]) for at, th in followed.history]
    return {
        "outcome_delay_s": outcome_delay_ms / 1000,
        "updates": len(followed.history) - 1,
        "task_threshold_first": task[0][1] if task else None,
        "task_threshold_last": task[-1][1] if task else None,
        "task_threshold_min": min(t for _, t in task) if task else None,
        "task_threshold_max": max(t for _, t in task) if task else None,
        "thresholds_last": list(followed.history[-1][1]) if followed.history else None,
        "hold_threshold_last": followed.hold_history[-1][1] if followed.hold_history else None,
        "hold_threshold_min": min(t for _, t in followed.hold_history) if followed.hold_history else None,
        "hold_threshold_max": max(t for _, t in followed.hold_history) if followed.hold_history else None,
        "tasks": followed.tasks,
        "outcomes_returned": followed.outcomes,
    }


def evaluate_dataset(
    data: Dataset,
    cases: list[dict[str, Any]],
    scorer: Scorer,
    episode_ms: int = DAY_MS,
    threshold: float | None = None,
    scores: np.ndarray | None = None,
    contacts: dict[str, list[int]] | None = None,
    residents: int | None = None,
    levels: np.ndarray | None = None,
    held: np.ndarray | None = None,
) -> dict[str, Any]:
    """:func:`evaluate` over feature rows already built from the events (``scores``: already computed).

    With ``contacts`` (:func:`fraud_contacts` of the events), the false tasks are also counted apart for
    subscribers who had already talked with a fraud number. ``levels``: each row's decided level (from
    :func:`followed_levels`); without them a row alerts at the task level when its score reaches the
    (static) task threshold. Rates are per 10k ``residents`` (else distinct callees and payers) per day.
    ``held``: each row's hold as the follower decided it (:attr:`FollowResult.held`); else the model's own
    hold threshold holds.
    """
    if scores is None:
        scores = scorer.score(data.X) if len(data.rows) else np.zeros(0)
    threshold_mode = "followed" if levels is not None else "static"
    task_threshold = threshold if threshold is not None else scorer.thresholds[TASK_LEVEL - 1]
    if levels is None and threshold is None:
        levels = np.asarray(decide_levels(scores.tolist(), scorer.thresholds, data.kinds), dtype=np.int8)
    subs = data.subscribers
    if levels is not None:
        task_rows = np.nonzero(levels >= TASK_LEVEL)[0]
    else:  # an explicit task threshold: the rows at it whose kind may reach the task level
        may_task = np.asarray(level_caps(data.kinds)) >= TASK_LEVEL
        task_rows = np.nonzero((scores >= task_threshold) & may_task)[0]
    alerts_by_sub: dict[str, list[int]] = defaultdict(list)
    for i in task_rows:
        alerts_by_sub[subs[i]].append(int(data.avail_ms[i]))
    on_call = data.X[:, FEATURE_INDEX["oncall_calls"]] if len(data.rows) else np.zeros(0)
    in_call = {(subs[i], int(data.avail_ms[i])) for i in task_rows if on_call[i] >= 1}
    alerts = [(sub, at) for sub, times in alerts_by_sub.items() for at in times]
    tasks = count_tasks(alerts, episode_ms)
    victims = {c["victim"] for c in cases}
    n_subs = max(len(set(subs)), 1)
    people = residents if residents else n_subs
    days = max((int(data.avail_ms.max()) - int(data.avail_ms.min())) / DAY_MS, 1 / 24) if len(subs) else 1.0
    per_10k_day = 10_000 / people / days
    by_scenario: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for case in cases:
        by_scenario[case["scenario"]].append(case)
    # Ticks (open calls re-scored) alert like events but are none: ``events`` and ``pr_auc`` leave them out.
    events = data.event_rows if len(data.rows) else np.zeros(0, dtype=bool)
    event_y = data.y[events]
    result: dict[str, Any] = {
        "events": int(events.sum()),
        "ticks": len(data.rows) - int(events.sum()),
        "subscribers": n_subs,
        "residents": people,
        "residents_source": "given" if residents else "distinct callees and payers seen",
        "days": round(days, 3),
        "model_version": scorer.version,
        "threshold_mode": threshold_mode,
        "task_threshold": task_threshold,
        "pr_auc": float(average_precision_score(event_y, scores[events])) if event_y.any() else None,
        "alerts": len(alerts),
        "alerts_per_10k_per_day": len(alerts) * per_10k_day,
        "tasks": len(tasks),
        "false_tasks": sum(1 for sub, _ in tasks if sub not in victims),
        "false_tasks_per_10k_per_day": sum(1 for sub, _ in tasks if sub not in victims) * per_10k_day,
    }
    if contacts is not None:
        # Optional extra: false tasks whose subscriber had picked up a call from a fraud number by then.
        contacted = sum(1 for sub, at in tasks if sub not in victims and contacts.get(sub) and contacts[sub][0] <= at)
        result["false_tasks_after_fraud_contact"] = contacted
        result["false_tasks_after_fraud_contact_per_10k_per_day"] = contacted * per_10k_day
    case_calls = victim_case_calls(data, cases)  # one walk over the rows for both
    first_seen = first_observable_ms(data, cases, case_calls)
    reasons = miss_reasons(data, cases, alerts_by_sub, case_calls)
    result.update(_case_figures(cases, alerts_by_sub, first_seen, reasons, in_call))
    result["in_call_alerts"] = len(in_call)
    # Optional extra (not in the contract's minimum): every lead time behind ``median_lead_time_s``, ascending.
    result["lead_times_s"] = sorted(_lead_times(cases, alerts_by_sub)[2])
    # Payment holds: transfers at the hold threshold (followed, or the model's own) that reached an alert.
    hold_threshold = getattr(scorer, "hold_threshold", None)  # a stand-in scorer may have none: no holds
    result["hold_threshold_mode"] = "static" if held is None else "followed"
    if held is None:
        alerting = levels >= 1 if levels is not None else scores >= scorer.thresholds[0]
        held = held_rows(data, scores, hold_threshold, alerting)
    held_cases = cases_held_at_loss(data, cases, held)
    false_holds = sum(1 for i in np.nonzero(held)[0] if subs[i] not in victims)
    result.update(
        {
            "hold_threshold": hold_threshold,
            "holds": int(held.sum()),
            "false_holds": false_holds,
            "false_holds_per_10k_per_day": false_holds * per_10k_day,
            **_hold_case_figures(cases, alerts_by_sub, held_cases),
        }
    )
    result["per_scenario"] = {
        name: {
            **_case_figures(group, alerts_by_sub, first_seen, reasons, in_call),
            **_hold_case_figures(group, alerts_by_sub, held_cases),
        }
        for name, group in sorted(by_scenario.items())
    }
    # Optional extra: the same history at other false-task rates (thresholds matched on it; see the function).
    result["operating_curve"] = operating_curve(data, cases, scores, episode_ms, residents=people) if len(subs) else []
    return result
