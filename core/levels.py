"""The risk-level table: what each level is called, what it does, what budget it gets and how the console shows it.

The dispatcher validates levels against it, training turns its budgets into score thresholds (one per level,
in table order), the model card and the console take names and colours from it. Adding a level is one entry
in :data:`LEVELS` (plus an action handler in the dispatcher if its action is a new kind). Readers go through
the functions below rather than copying the table at import time, so a test can register a level.
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal, get_args

__all__ = [
    "ACTIONS",
    "LEVELS",
    "REPEATED_ACTIONS",
    "Action",
    "RiskLevel",
    "budget_factors",
    "candidate_groups",
    "check_levels",
    "decide_level",
    "decide_levels",
    "default_actions",
    "level",
    "level_budgets",
    "level_cap",
    "level_caps",
    "level_numbers",
    "levels",
]

Action = Literal["none", "warning", "call_centre", "face_to_face"]
ACTIONS: tuple[Action, ...] = get_args(Action)
# Actions a case repeats when a new call or transfer of its episode reaches their level again: a warning and a
# call-centre call are cheap and say "this call, now"; a visit is not repeated (one officer per case, and the
# acknowledgement watcher escalates a visit that stalls).
REPEATED_ACTIONS: frozenset[Action] = frozenset({"warning", "call_centre"})


@dataclass(frozen=True, slots=True)
class RiskLevel:
    """One risk level. Its budget is either relative (``budget_factor`` times the face-to-face budget,
    ``FW_BUDGET_TASKS_PER_10K_PER_DAY``) or absolute (``budget_per_10k_per_day``), never both."""

    number: int
    name: str
    action: Action  # the default; FW_LEVEL_ACTIONS overrides it per level
    summary: str  # what the subscriber gets, as the model card says it
    colour: str  # CSS colour of the level's badge and map dot in the console
    budget_factor: float | None = None
    budget_per_10k_per_day: float | None = None
    # Event kinds (schemas) whose rows may not reach this level, nor any above it.
    barred_kinds: frozenset[str] = field(default_factory=frozenset)

    @property
    def css_class(self) -> str:
        """The console's CSS class of this level."""
        return f"level-{self.number}"

    def budget(self, face_to_face_per_10k_per_day: float) -> float:
        """Alerts per 10k subscribers per day this level may make, given the face-to-face budget."""
        if self.budget_per_10k_per_day is not None:
            return self.budget_per_10k_per_day
        assert self.budget_factor is not None  # check_levels guarantees one of the two
        return face_to_face_per_10k_per_day * self.budget_factor


LEVELS: tuple[RiskLevel, ...] = (
    # An SMS or in-app warning costs nearly nothing, a call-centre call some minutes, a visit an officer's hour:
    # so the lower levels may alert 30 and 5 times as often as the face-to-face budget.
    RiskLevel(1, "warning", "warning", "SMS warning", "#f9a825", budget_factor=30.0),
    RiskLevel(2, "call centre", "call_centre", "call-centre call", "#ef6c00", budget_factor=5.0),
    # A connect (call_start.v1) says who is on the line, not what was said: at connect, a sweeping line's
    # hundredth answered call looks like a scam's. It may warn and interrupt the call, never send an officer
    # (a held-out city got 5 false visits per 10k a day from connects alone); a later call end, transfer or
    # timer tick of the same call may.
    RiskLevel(
        3,
        "face to face",
        "face_to_face",
        "face-to-face dissuasion task",
        "#c62828",
        budget_factor=1.0,
        barred_kinds=frozenset({"call_start.v1"}),
    ),
)


def check_levels(table: tuple[RiskLevel, ...]) -> None:
    """Raise ValueError unless ``table`` is levels 1..n in order, each with one budget, budgets shrinking."""
    if [lv.number for lv in table] != list(range(1, len(table) + 1)):
        raise ValueError(f"levels must be numbered 1..n in order, got {[lv.number for lv in table]}")
    for lv in table:
        if (lv.budget_factor is None) == (lv.budget_per_10k_per_day is None):
            raise ValueError(f"level {lv.number}: give exactly one of budget_factor and budget_per_10k_per_day")
        if lv.action not in ACTIONS:
            raise ValueError(f"level {lv.number}: unknown action {lv.action!r}")
    # Training sorts the thresholds ascending and hands them out in level order: a higher level must get a
    # smaller budget (so a higher threshold), or thresholds and budgets would be paired up wrongly. Checked
    # among relative budgets; an absolute one is the table author's to place.
    budgets = [lv.budget(1.0) for lv in table]
    relative = [lv.budget_factor for lv in table if lv.budget_factor is not None]
    if any(b <= 0 for b in budgets) or any(x <= y for x, y in itertools.pairwise(relative)):
        raise ValueError(f"level budgets must be positive and shrink with the level, got {budgets}")


def levels() -> tuple[RiskLevel, ...]:
    """The table, checked."""
    check_levels(LEVELS)
    return LEVELS


def level(number: int) -> RiskLevel:
    """The level numbered ``number``, or KeyError."""
    for lv in levels():
        if lv.number == number:
            return lv
    raise KeyError(number)


def level_numbers() -> tuple[int, ...]:
    """The valid level numbers, lowest first."""
    return tuple(lv.number for lv in levels())


def budget_factors() -> tuple[float | None, ...]:
    """Each level's budget relative to the face-to-face budget (None for an absolute budget), level order."""
    return tuple(lv.budget_factor for lv in levels())


def level_budgets(face_to_face_per_10k_per_day: float) -> list[float]:
    """Each level's alert budget per 10k subscribers per day, in level order."""
    return [lv.budget(face_to_face_per_10k_per_day) for lv in levels()]


def level_cap(kind: str) -> int:
    """The highest level a row of event kind ``kind`` may reach: the levels stop below the first that bars it."""
    for lv in levels():
        if kind in lv.barred_kinds:
            return lv.number - 1
    return len(levels())


def decide_level(score: float, thresholds: Sequence[float], kind: str = "") -> int:
    """The highest level, up to its kind's cap, whose threshold the score reaches (0: none).

    The one score-to-level rule: the stream's decisions, the offline follower, ``evaluate`` and training all
    come here (or to :func:`decide_levels`), so none of them can disagree on a level. Thresholds ascend within
    each of :func:`candidate_groups` (a followed visit threshold may sit below the warnings' when connects, which
    only the lower levels see, crowd theirs); with ascending thresholds this is the bisection it always was.
    """
    return _decide(score, thresholds, level_cap(kind), _ascending(thresholds))


def _ascending(thresholds: Sequence[float]) -> bool:
    return all(a <= b for a, b in itertools.pairwise(thresholds))


def _decide(score: float, thresholds: Sequence[float], cap: int, ascending: bool) -> int:
    cap = min(cap, len(thresholds))  # a caller may pass fewer thresholds than levels (a plot's operating points)
    if ascending:
        return bisect.bisect_right(thresholds, score, hi=cap)
    for number in range(cap, 0, -1):
        if score >= thresholds[number - 1]:
            return number
    return 0


def candidate_groups() -> tuple[int, ...]:
    """Per level, a group number shared by consecutive levels that the same event kinds may reach: their
    followed thresholds fit the same candidates, so they ascend within the group (not across groups)."""
    groups: list[int] = []
    barred: frozenset[str] = frozenset()
    for lv in levels():
        if not groups:
            groups.append(0)
        else:
            groups.append(groups[-1] + 1 if lv.barred_kinds - barred else groups[-1])
        barred |= lv.barred_kinds
    return tuple(groups)


def level_caps(kinds: Sequence[str]) -> list[int]:
    """:func:`level_cap` of each row's kind (the table read once per distinct kind, not per row)."""
    caps = {kind: level_cap(kind) for kind in set(kinds)}
    return [caps[k] for k in kinds]


def decide_levels(scores: Sequence[float], thresholds: Sequence[float], kinds: Sequence[str]) -> list[int]:
    """:func:`decide_level` of each (score, kind), for a batch or a whole history."""
    ascending = _ascending(thresholds)
    return [_decide(s, thresholds, cap, ascending) for s, cap in zip(scores, level_caps(kinds), strict=True)]


def default_actions() -> dict[int, Action]:
    """The action of each level when the operator overrides nothing (the default of FW_LEVEL_ACTIONS)."""
    return {lv.number: lv.action for lv in levels()}
