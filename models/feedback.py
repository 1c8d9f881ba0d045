"""Thresholds that follow the responders' feedback: each level spends its budget of *false* alerts, on any stream.

A model's thresholds are fitted on its training worlds; on another stream its scores sit elsewhere, and the
face-to-face budget is over- or under-spent by a factor nobody can know in advance. What the service does
learn, some hours after each task, is whether that visit was a false alarm. The follower is a small state
machine over the trailing window, refitted every few seconds (service) or minutes of event time (evaluate):

- *spent*: the level's alerts in the window (one per subscriber), each weighing 1 if that subscriber's task
  came back ``false_alarm``, 0 if it came back anything else, and otherwise the false share of recent
  outcomes (a Beta average from a prior, so the first hours, before outcomes return, count task volume);
- clearly overspent (spent, less ``evidence_sd`` Poisson SDs, above the level's allowance): the threshold jumps
  to the *fit*, the lowest score at which the window's candidates (every row scored at or above the lowest
  threshold any level may reach and whose kind may reach this level, each subscriber's best), weighted the
  same way, fit the allowance; it
  never falls on this branch;
- underspent (spent, plus ``explore_sd`` SDs, below the allowance): the threshold steps down,
  ``logit_down_per_day`` log-odds a day (up to twice that with much room), so it explores lower scores and
  learns from their outcomes; slowly, since a wrong step shows only when its outcomes return; else it holds.

Only false alerts spend the budget, so a stream with thirty times the victims keeps its recall (a cap on
*all* tasks would cap recall near 10 % on a stream with 12 victims per 10k). Each threshold stays within
``[model - logit_down, model + logit_up]`` in log-odds, and the model's own thresholds hold until the window
holds ``min_span_ms`` of traffic. A model promoted after training on this stream's own rows counts only the rows
it never saw (:func:`unseen_window`). A level's window is long enough for its budget to
count whole visits in a small city (``window_visits`` visits at the budget; between one and seven days).

The same step serves the stream worker (candidates, outcomes and thresholds kept in Redis, so they survive
restarts and are the same on every worker) and ``evaluate`` (:func:`follow_offline`: outcomes simulated from
the cases file with a delay), so what ``evaluate`` prints is what the service would have done.
"""

from __future__ import annotations

import heapq
import math
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Reversible, Sequence
from dataclasses import dataclass, field

import numpy as np

from core.levels import candidate_groups, decide_level, level_caps
from core.settings import Settings
from features import DAY_MS

__all__ = [
    "FollowConfig",
    "FollowResult",
    "ModelSwap",
    "best_in_windows",
    "best_per_level",
    "candidate_floor",
    "carry_over",
    "false_share",
    "follow_offline",
    "follow_thresholds",
    "match_alert_rate",
    "threshold_bounds",
    "unseen_window",
]

HOUR_MS = 3_600_000


@dataclass(frozen=True)
class FollowConfig:
    """The follower's knobs; the service reads them from ``FW_BUDGET_*`` settings."""

    window_visits: float = 5.0  # a level's window holds this many false alerts at its budget...
    min_window_ms: int = DAY_MS  # ...but at least a day...
    max_window_ms: int = 7 * DAY_MS  # ...and at most a week (candidates are kept this long)
    min_span_ms: int = HOUR_MS  # less traffic than this: the model's own thresholds hold
    logit_up: float = 10.0  # bounds around the model's threshold, in log-odds (a cold new city needs ~9)
    logit_down: float = 2.0
    logit_down_per_day: float = 1.0  # how fast an underspent level explores lower scores (up to 2x)
    evidence_sd: float = 1.5  # overspent only beyond this many Poisson SDs of the window's count...
    explore_sd: float = 0.5  # ...underspent below this many
    explore_pace_max: float = 2.0
    aim: float = 0.8  # spend this share of each budget: the past window only estimates the next
    prior_false_share: float = 0.5  # before outcomes return
    prior_weight: float = 0.5  # outcomes it takes to outweigh the prior
    outcome_memory: int = 100  # the false share is over this many most recent outcomes (the current region)
    # Whose outcome is known (a weight of 0 or 1 instead of the share): this many newest outcomes, enough for a
    # week's visits in a big city. Only the last ``outcome_memory`` made a held victim count as false again once
    # its visit's outcome was a hundred outcomes old (seen live: the hold threshold at 0.999, offline at 0.916).
    known_memory: int = 20_000
    # A held transfer with no outcome counts as this much of a false hold. Not the tasks' false share: most
    # holds belong to people no one visits (a warning-level alert), whose holds lapse unlabelled, while the
    # outcomes that do return are mostly the victims' (seen: with the share, the threshold slid to its lower
    # bound and held 14 innocent transfers per 10k a day). A hold is false until its case says otherwise.
    hold_unknown_false: float = 1.0

    def window_ms(self, budget: float, residents: int) -> int:
        """The window of a level with ``budget`` false alerts per 10k per day, in a city of ``residents``."""
        per_day = budget * max(residents, 1) / 10_000
        wanted = self.window_visits / per_day * DAY_MS if per_day > 0 else self.max_window_ms
        return int(min(max(wanted, self.min_window_ms), self.max_window_ms))

    @classmethod
    def from_settings(cls, settings: Settings) -> FollowConfig:
        """The follower the ``FW_BUDGET_*`` settings describe."""
        return cls(
            window_visits=settings.budget_window_visits,
            min_span_ms=int(settings.budget_min_span_h * HOUR_MS),
            logit_up=settings.budget_logit_up,
            logit_down=settings.budget_logit_down,
            logit_down_per_day=settings.budget_logit_down_per_day,
            aim=settings.budget_aim,
            prior_false_share=settings.budget_prior_false_share,
            prior_weight=settings.budget_prior_weight,
        )


def _logit(p: float) -> float:
    q = min(max(p, 1e-12), 1 - 1e-12)
    return math.log(q / (1 - q))


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def _bounds(base: float, config: FollowConfig) -> tuple[float, float]:
    x = _logit(base)
    return _sigmoid(x - config.logit_down), _sigmoid(x + config.logit_up)


def threshold_bounds(base: Sequence[float], config: FollowConfig) -> list[tuple[float, float]]:
    """Each level's (lowest, highest) threshold around the model's own."""
    return [_bounds(b, config) for b in base]


def candidate_floor(base: Sequence[float], config: FollowConfig) -> float:
    """The lowest score any level's threshold may reach: rows below it need not be kept as candidates."""
    return min(_bounds(b, config)[0] for b in base)


def false_share(outcomes_false: Iterable[bool], config: FollowConfig) -> float:
    """Share of visits that are false alarms: recent outcomes (``True`` = false alarm) averaged with the prior."""
    recent = list(outcomes_false)[-config.outcome_memory :]
    return (sum(recent) + config.prior_weight * config.prior_false_share) / (len(recent) + config.prior_weight)


def _fit(best: Sequence[tuple[float, float]], allowed: float, lo: float, hi: float) -> float:
    """Lowest threshold in [lo, hi] whose (score, weight) candidates above it weigh at most ``allowed``."""
    spent = 0.0
    threshold = lo  # all candidates down to the bound fit
    for score, weight in best:  # highest score first
        if score < lo:
            break
        if spent + weight > allowed:
            threshold = math.nextafter(score, math.inf)  # just above the first one that does not fit
            break
        spent += weight
    return min(max(threshold, lo), hi)


def follow_thresholds(
    base: Sequence[float],
    budgets: Sequence[float],
    previous: Sequence[float],
    windows: Sequence[Mapping[str, float]],
    known_false: Mapping[str, bool],
    share: float,
    residents: int,
    span_ms: int,
    elapsed_ms: int,
    config: FollowConfig,
    groups: Sequence[int] | None = None,
) -> tuple[float, ...]:
    """One step: each level's threshold from its previous one, its window and the outcomes known.

    ``windows[i]``: each subscriber's best candidate score in level i + 1's window (see
    :meth:`FollowConfig.window_ms`); ``known_false``: subscribers whose visit has come back (True: false
    alarm); ``span_ms``: traffic seen so far; ``elapsed_ms``: since the previous step. ``groups``: per level,
    the group whose thresholds ascend together (:func:`core.levels.candidate_groups`; None: all one group).
    """
    if span_ms < config.min_span_ms or residents <= 0:
        return tuple(base)

    z = config.evidence_sd
    out = []
    for b, budget, prev, best in zip(base, budgets, previous, windows, strict=True):
        lo, hi = _bounds(b, config)
        days = min(span_ms, config.window_ms(budget, residents)) / DAY_MS
        allowed = config.aim * budget * residents / 10_000 * days
        ranked = sorted(((s, _weight(known_false.get(sub), share)) for sub, s in best.items()), reverse=True)
        # What the window would have spent at the current threshold (its alerts then), as a Poisson count.
        spent = sum(w for s, w in ranked if s >= prev)
        if spent - z * math.sqrt(spent) > allowed:
            threshold = max(prev, _fit(ranked, allowed, lo, hi))
        elif spent + config.explore_sd * math.sqrt(spent) < allowed:
            # Underspent: explore lower scores (less evidence is asked than for raising: a wrong step down is
            # soon corrected by a jump up), faster the more room there is (at most ``explore_pace_max`` times).
            room = allowed / max(spent + config.explore_sd * math.sqrt(spent), 1e-9)
            pace = min(max(room, 1.0), config.explore_pace_max)
            threshold = _sigmoid(_logit(prev) - pace * config.logit_down_per_day * elapsed_ms / DAY_MS)
        else:
            threshold = prev
        out.append(min(max(threshold, lo), hi))
    # Within a group (levels fitted on the same candidates) a higher level never sits below a lower one: each
    # level's alert is also the lower levels' alert. Across groups it may (core.levels.decide_level).
    group_of = groups if groups is not None else [0] * len(out)
    top: dict[int, float] = {}
    for i, g in enumerate(group_of):
        out[i] = top[g] = max(out[i], top.get(g, out[i]))
    return tuple(out)


def _weight(known: bool | None, share: float) -> float:
    return share if known is None else float(known)


@dataclass
class FollowResult:
    """What :func:`follow_offline` decided: each row's level and the thresholds over time."""

    levels: np.ndarray  # int8 per row, in the rows' order
    history: list[tuple[int, tuple[float, ...]]] = field(default_factory=list)  # (from event ms, thresholds)
    outcomes: int = 0  # outcomes that had come back by the end
    tasks: int = 0
    # Per row, whether it was held (a transfer at the followed hold threshold of its moment that reached an
    # alert); None: the model has no hold threshold.
    held: np.ndarray | None = None
    hold_history: list[tuple[int, float]] = field(default_factory=list)  # (from event ms, hold threshold)
    task_rows: list[int] = field(default_factory=list)  # the row that opened each task, in time order


@dataclass(frozen=True)
class ModelSwap:
    """A new model serving from ``at_ms`` on (``follow_offline``): its thresholds and its score of every row."""

    at_ms: int
    base: tuple[float, ...]
    hold_base: float | None
    scores: np.ndarray  # per row, in the rows' order, as the new model scores them
    # Start from the old thresholds' offset carried over (:func:`carry_over`); False: from the new model's own.
    carry: bool = True
    # The latest event time of this stream's rows it trained on (None: none): its windows hold only later rows
    # (:func:`unseen_window`).
    learnt_until_ms: int | None = None


def unseen_window(
    now_ms: int, start_ms: int, windows_ms: Sequence[int], learnt_until_ms: int | None
) -> tuple[list[int], int]:
    """Each level's window start and the traffic span the follower counts, for a model that learnt this stream's rows
    up to ``learnt_until_ms`` (None: none): its windows hold only rows after that, and its span starts there.

    A retrain on the city's own outcomes learnt the earlier rows (their false alarms were its negatives), so it
    scores them low and, re-scored, they make the window look underspent: exploring on that evidence flooded a
    city's week 4 (issue #21's notes, stops 40 and 42). Until its own window of unseen rows holds ``min_span_ms`` it
    keeps the thresholds it was handed; then that window's allowance grows with it, so it explores only as far as
    rows it never saw allow.
    """
    since = start_ms if learnt_until_ms is None else max(start_ms, learnt_until_ms)
    return [max(now_ms - w, since) for w in windows_ms], now_ms - since


def carry_over(
    previous: Sequence[float], old_base: Sequence[float], new_base: Sequence[float], config: FollowConfig
) -> tuple[float, ...]:
    """The thresholds a new model starts from: the old ones' offset from their model's, in log-odds, on the new
    model's own, within the new bounds. What the follower learnt of this city (how far it sits from the training
    worlds) carries over; the window's candidates, re-scored, and the outcomes then refit it at once."""
    out = []
    for prev, old, new in zip(previous, old_base, new_base, strict=True):
        lo, hi = _bounds(new, config)
        out.append(min(max(_sigmoid(_logit(new) + _logit(prev) - _logit(old)), lo), hi))
    return tuple(out)


def match_alert_rate(
    live_scores: np.ndarray, live_thresholds: Sequence[float], new_scores: np.ndarray
) -> tuple[float, ...]:
    """Thresholds at which ``new_scores`` alert on as many rows as ``live_scores`` do at ``live_thresholds``.

    The same rows, scored by the live model and by one about to replace it (rows neither trained on): the new
    model takes over at the live alert volume. A log-odds offset (:func:`carry_over`) measures the *old* model's
    distance from the city; a retrain that learnt the city does not share it (issue #21's note, stop 39).
    """
    ranked = np.sort(np.asarray(new_scores, dtype=float))[::-1]
    live = np.asarray(live_scores, dtype=float)
    if not len(ranked) or len(live) != len(ranked):
        raise ValueError("both models must score the same rows, at least one")
    out = []
    for threshold in live_thresholds:
        alerting = int(np.count_nonzero(live >= threshold))
        # None of the rows alerting live: just above the new model's best row, so that none alerts either.
        out.append(float(ranked[alerting - 1]) if alerting else math.nextafter(float(ranked[0]), math.inf))
    return tuple(out)


def follow_offline(
    subscribers: Sequence[str],
    avail_ms: np.ndarray,
    scores: np.ndarray,
    base: Sequence[float],
    budgets: Sequence[float],
    residents: int,
    is_false: Callable[[str], bool],
    *,
    task_level: int,
    kinds: Sequence[str] | None = None,
    episode_ms: int = DAY_MS,
    outcome_delay_ms: int = 4 * HOUR_MS,
    update_ms: int = 10 * 60_000,
    config: FollowConfig | None = None,
    hold_base: float | None = None,
    hold_budget: float = 0.0,
    transfers: np.ndarray | None = None,
    swaps: Sequence[ModelSwap] = (),
) -> FollowResult:
    """Replay rows in event time as the service decides them, thresholds following simulated outcomes.

    Every ``update_ms`` of event time the thresholds are refitted from the window so far; each task (the
    first task-level alert of a subscriber episode) comes back ``outcome_delay_ms`` later, false when
    ``is_false(subscriber)``. Rows are decided with the thresholds of their moment, never later ones.
    ``kinds``: each row's event kind, for the levels' caps (:func:`core.levels.decide_level`); a row capped below
    a level is no candidate for that level's refits, as in the service (``streams.budget``).
    ``hold_base``: the model's hold threshold, followed the same way on its own chain with ``hold_budget``
    false holds per 10k per day, its candidates the ``transfers`` rows (a bool mask) only.
    ``swaps`` (in time order): new models taking over mid-stream; the thresholds carry over (:func:`carry_over`),
    the window's candidates are re-scored by the new model and refitted at once, the outcomes stay known; one
    that trained on this stream's rows counts only the rows it never saw (:func:`unseen_window`).
    """
    config = config or FollowConfig()
    n = len(scores)
    decided = np.zeros(n, dtype=np.int8)
    result = FollowResult(decided)
    if n == 0:
        return result
    order = np.argsort(avail_ms, kind="stable")
    base = tuple(base)
    floor = candidate_floor(base, config)
    spans = [config.window_ms(b, residents) for b in budgets]
    thresholds = base
    start = int(avail_ms[order[0]])
    result.history.append((start, thresholds))
    last_update = start
    # Rows at the floor: (event ms, sub, score, cap), and each one's row (to re-score it when a model takes over).
    candidates: deque[tuple[int, str, float, int]] = deque()
    candidate_rows: deque[int] = deque()
    pending: list[tuple[int, str, bool]] = []  # a heap of (known at, subscriber, false alarm)
    known: dict[str, bool] = {}  # newest outcome per subscriber, of the last ``known_memory``
    recent: deque[bool] = deque(maxlen=config.outcome_memory)
    known_order: deque[str] = deque()
    known_count: dict[str, int] = {}  # outcomes of each subscriber among the last ``known_memory``
    open_until: dict[str, int] = {}
    row_kinds: Sequence[str] = kinds if kinds is not None else [""] * n
    caps = level_caps(row_kinds)
    hold = _HoldChain(hold_base, hold_budget, residents, config, start) if hold_base is not None else None
    is_transfer = transfers.tolist() if transfers is not None else [False] * n
    held = np.zeros(n, dtype=bool)
    upcoming = deque(sorted(swaps, key=lambda s: s.at_ms))
    current = scores
    learnt_until: int | None = None  # a promoted model's last row of this stream it trained on

    def refit(at: int, elapsed_ms: int) -> None:
        nonlocal thresholds
        while pending and pending[0][0] <= at:
            _, who, false = heapq.heappop(pending)
            known[who] = false
            recent.append(false)
            known_order.append(who)
            known_count[who] = known_count.get(who, 0) + 1
            if len(known_order) > config.known_memory:
                gone = known_order.popleft()
                known_count[gone] -= 1
                if not known_count[gone]:  # someone with a newer outcome in memory stays known
                    del known_count[gone], known[gone]
        while candidates and candidates[0][0] < at - config.max_window_ms:
            candidates.popleft()
            candidate_rows.popleft()
        share = false_share(recent, config)
        since, span_ms = unseen_window(at, start, spans, learnt_until)
        fitted = follow_thresholds(
            base,
            budgets,
            thresholds,
            best_per_level(candidates, since),
            known,
            share,
            residents,
            span_ms,
            elapsed_ms,
            config,
            candidate_groups(),
        )
        if hold is not None:
            hold.refit(known, at, elapsed_ms)
        if fitted != thresholds:
            thresholds = fitted
            result.history.append((at, thresholds))

    for i in order.tolist():
        at, sub, kind = int(avail_ms[i]), subscribers[i], row_kinds[i]
        if upcoming and at >= upcoming[0].at_ms:
            swap = upcoming.popleft()
            thresholds = carry_over(thresholds, base, swap.base, config) if swap.carry else tuple(swap.base)
            base, current = tuple(swap.base), swap.scores
            floor = candidate_floor(base, config)
            kept = [(c, r) for c, r in zip(candidates, candidate_rows, strict=True) if float(current[r]) >= floor]
            candidates = deque((c[0], c[1], float(current[r]), c[3]) for c, r in kept)
            candidate_rows = deque(r for _, r in kept)
            if hold is not None:
                hold.swap(swap.hold_base, current, swap.carry, swap.learnt_until_ms)
            learnt_until = swap.learnt_until_ms
            result.history.append((at, thresholds))
            refit(at, 0)
            last_update = at
        score = float(current[i])
        if at >= last_update + update_ms:
            refit(at, at - last_update)
            last_update = at
        level = decide_level(score, thresholds, kind)
        decided[i] = level
        if hold is not None and is_transfer[i]:
            held[i] = level >= 1 and score >= hold.threshold
            hold.observe(at, sub, score, i)
        if score >= floor and caps[i] >= 1:
            candidates.append((at, sub, score, caps[i]))
            candidate_rows.append(i)
        if level >= task_level and at >= open_until.get(sub, -1):
            open_until[sub] = at + episode_ms
            result.tasks += 1
            result.task_rows.append(i)
            heapq.heappush(pending, (at + outcome_delay_ms, sub, is_false(sub)))
    result.outcomes = len(recent)
    if hold is not None:
        result.held, result.hold_history = held, hold.history
    return result


class _HoldChain:
    """The hold threshold's own follower in :func:`follow_offline`: one level, transfers as its candidates."""

    def __init__(self, base: float, budget: float, residents: int, config: FollowConfig, start_ms: int) -> None:
        self.base, self.budget, self.residents, self.config = base, budget, residents, config
        self.threshold = base
        self.floor = _bounds(base, config)[0]
        self.span = config.window_ms(budget, residents)
        self.start = start_ms
        self.learnt_until: int | None = None  # a promoted model's, as the levels' (:func:`unseen_window`)
        self.candidates: deque[tuple[int, str, float]] = deque()
        self.rows: deque[int] = deque()
        self.history: list[tuple[int, float]] = [(start_ms, base)]

    def observe(self, at: int, subscriber: str, score: float, row: int) -> None:
        if score >= self.floor:
            self.candidates.append((at, subscriber, score))
            self.rows.append(row)

    def swap(self, base: float | None, scores: np.ndarray, carry: bool = True, learnt_until: int | None = None) -> None:
        """A new model's hold threshold (None: it has none; the old one's offset carried over, as the levels')."""
        if base is None:
            return
        self.learnt_until = learnt_until
        (self.threshold,) = carry_over((self.threshold,), (self.base,), (base,), self.config) if carry else (base,)
        self.base, self.floor = base, _bounds(base, self.config)[0]
        kept = [(c, r) for c, r in zip(self.candidates, self.rows, strict=True) if float(scores[r]) >= self.floor]
        self.candidates = deque((c[0], c[1], float(scores[r])) for c, r in kept)
        self.rows = deque(r for _, r in kept)

    def refit(self, known: Mapping[str, bool], at: int, elapsed_ms: int) -> None:
        while self.candidates and self.candidates[0][0] < at - self.span:
            self.candidates.popleft()
            self.rows.popleft()
        since, span_ms = unseen_window(at, self.start, (self.span,), self.learnt_until)
        (fitted,) = follow_thresholds(
            (self.base,),
            (self.budget,),
            (self.threshold,),
            best_in_windows(self.candidates, since),
            known,
            self.config.hold_unknown_false,
            self.residents,
            span_ms,
            elapsed_ms,
            self.config,
        )
        if fitted != self.threshold:
            self.threshold = fitted
            self.history.append((at, fitted))


def best_per_level(
    candidates: Sequence[tuple[int, str, float, int]], since_ms: Sequence[int]
) -> list[dict[str, float]]:
    """Each level's window of :func:`best_in_windows` (``since_ms``: one start per level), from the ``(event ms,
    subscriber, score, cap)`` candidates whose kind may reach that level (``cap``: :func:`core.levels.level_cap`),
    so a connect, capped below a visit, spends the warnings' and calls' budgets and never the visits'. The levels
    of one :func:`core.levels.candidate_groups` group share their candidates: one walk per group."""
    groups = candidate_groups()
    out: list[dict[str, float]] = [{} for _ in since_ms]
    for group in sorted(set(groups)):
        members = [i for i, g in enumerate(groups) if g == group]
        lowest = members[0] + 1  # a kind reaching the group's lowest level reaches all of them
        reaching = [(at, sub, score) for at, sub, score, cap in candidates if cap >= lowest]
        for i, best in zip(members, best_in_windows(reaching, [since_ms[i] for i in members]), strict=True):
            out[i] = best
    return out


def best_in_windows(candidates: Reversible[tuple[int, str, float]], since_ms: Sequence[int]) -> list[dict[str, float]]:
    """Each subscriber's best score among ``(event ms, subscriber, score)`` candidates (in time order), per
    window start: one walk from the newest back, each window's map copied as the walk passes its start."""
    starts = sorted(set(since_ms), reverse=True)  # the shortest window first
    maps: dict[int, dict[str, float]] = {}
    best: dict[str, float] = {}
    walk = iter(reversed(candidates))
    row = next(walk, None)
    for since in starts:
        while row is not None and row[0] >= since:
            if row[2] > best.get(row[1], -1.0):
                best[row[1]] = row[2]
            row = next(walk, None)
        maps[since] = dict(best)
    return [maps[since] for since in since_ms]
