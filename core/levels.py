"""The risk-level table: what each level is called, what it does, what budget it gets and how the console shows it.

The dispatcher validates levels against it, training turns its budgets into score thresholds (one per level,
in table order), the model card and the console take names and colours from it. Adding a level is one entry
in :data:`LEVELS` (plus an action handler in the dispatcher if its action is a new kind). Readers go through
the functions below rather than copying the table at import time, so a test can register a level.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Literal, get_args

__all__ = [
    "ACTIONS",
    "LEVELS",
    "Action",
    "RiskLevel",
    "budget_factors",
    "check_levels",
    "default_actions",
    "level",
    "level_budgets",
    "level_numbers",
    "levels",
]

Action = Literal["none", "warning", "call_centre", "face_to_face"]
ACTIONS: tuple[Action, ...] = get_args(Action)


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
    RiskLevel(3, "face to face", "face_to_face", "face-to-face dissuasion task", "#c62828", budget_factor=1.0),
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


def default_actions() -> dict[int, Action]:
    """The action of each level when the operator overrides nothing (the default of FW_LEVEL_ACTIONS)."""
    return {lv.number: lv.action for lv in levels()}
