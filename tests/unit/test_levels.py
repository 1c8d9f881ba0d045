"""The risk-level table is the one source: the dispatcher, training, the model card and the console agree on it."""

from __future__ import annotations

import pytest
from redis.asyncio import Redis

import core.levels
from alerting.console.server import levels_css, levels_json
from alerting.decision import Decision
from alerting.dispatcher import Dispatcher, validate_decision
from core.errors import InvalidDecision
from core.levels import (
    LEVELS,
    RiskLevel,
    budget_factors,
    check_levels,
    decide_level,
    decide_levels,
    default_actions,
    level,
    level_cap,
    level_numbers,
)
from core.settings import Settings
from models.train import level_thresholds

pytestmark = pytest.mark.unit

ESCORT = RiskLevel(4, "escort", "face_to_face", "police escort to the bank", "#6a1b9a", budget_factor=0.2)


def _decision(level_number: int) -> Decision:
    return Decision("+8613800000001", "e-1", 1_700_000_000_000, 0.99, level_number, "m-1")


def _threshold_for(budget: float, level_number: int = 0) -> float:
    return 1.0 / (1.0 + budget)  # any score threshold falls as the budget grows


def test_the_table_as_shipped() -> None:
    assert level_numbers() == (1, 2, 3)
    assert [(lv.name, lv.action) for lv in LEVELS] == [
        ("warning", "warning"),
        ("call centre", "call_centre"),
        ("face to face", "face_to_face"),
    ]
    # The factors training used before the table existed, in the same order: thresholds stay identical.
    assert budget_factors() == (30.0, 5.0, 1.0)
    assert level_thresholds(_threshold_for, 1.5) == sorted(_threshold_for(1.5 * f) for f in (30.0, 5.0, 1.0))
    assert Settings().level_actions == {1: "warning", 2: "call_centre", 3: "face_to_face"} == default_actions()
    assert level(3).css_class == "level-3"
    with pytest.raises(KeyError):
        level(0)


def test_bad_tables_are_refused() -> None:
    with pytest.raises(ValueError, match="numbered"):
        check_levels((LEVELS[0], LEVELS[2]))
    with pytest.raises(ValueError, match="exactly one"):
        check_levels((RiskLevel(1, "x", "warning", "x", "#000", budget_factor=1.0, budget_per_10k_per_day=2.0),))
    with pytest.raises(ValueError, match="shrink"):
        check_levels((*LEVELS, RiskLevel(4, "x", "warning", "x", "#000", budget_factor=2.0)))


def test_an_absolute_budget_ignores_the_face_to_face_budget() -> None:
    fixed = RiskLevel(1, "x", "warning", "x", "#000", budget_per_10k_per_day=12.0)
    assert fixed.budget(1.0) == fixed.budget(3.0) == 12.0


def test_settings_override_actions_per_level_and_refuse_unknown_levels() -> None:
    custom = Settings(level_actions={2: "none"})
    dispatcher = Dispatcher(Redis(), custom)  # no command is sent: the client connects lazily
    assert [dispatcher.action_of(n) for n in level_numbers()] == ["warning", "none", "face_to_face"]
    with pytest.raises(ValueError, match="unknown levels"):
        Settings(level_actions={4: "warning"})


def test_a_fourth_level_reaches_dispatcher_training_card_and_console(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(InvalidDecision):
        validate_decision(_decision(4))
    assert len(level_thresholds(_threshold_for, 1.0)) == 3

    monkeypatch.setattr(core.levels, "LEVELS", (*LEVELS, ESCORT))  # the one edit a new level needs

    validate_decision(_decision(4))  # the dispatcher accepts it ...
    with pytest.raises(InvalidDecision):
        validate_decision(_decision(5))
    settings = Settings()
    assert settings.level_actions[4] == "face_to_face"  # ... with its action from the table
    assert Dispatcher(Redis(), settings).action_of(4) == "face_to_face"
    # Training makes one more threshold, the highest (the smallest budget).
    thresholds = level_thresholds(_threshold_for, 1.0)
    assert thresholds == sorted(_threshold_for(b) for b in (30.0, 5.0, 1.0, 0.2)) and thresholds[-1] == max(thresholds)
    # The console serves its name and colour.
    assert levels_json(settings)[-1] == {
        "level": 4,
        "name": "escort",
        "summary": "police escort to the bank",
        "action": "face_to_face",
        "colour": "#6a1b9a",
        "css_class": "level-4",
    }
    assert ".level.level-4 { background: #6a1b9a; }" in levels_css()
    assert [x["level"] for x in levels_json(settings)] == list(level_numbers())


THRESHOLDS = (0.2, 0.5, 0.9)


@pytest.mark.parametrize(
    ("score", "kind", "expected"),
    [
        (0.1, "call.v1", 0),
        (0.2, "call.v1", 1),  # a threshold is reached at equality
        (0.6, "transfer.v1", 2),
        (0.95, "call.v1", 3),
        (0.95, "transfer.v1", 3),
        (0.95, "", 3),  # a row recorded before kinds is not capped
        (0.95, "call_start.v1", 2),  # a connect interrupts the call, never sends an officer
        (0.6, "call_start.v1", 2),
        (0.3, "call_start.v1", 1),
    ],
)
def test_one_rule_turns_a_score_and_its_kind_into_a_level(score: float, kind: str, expected: int) -> None:
    assert decide_level(score, THRESHOLDS, kind) == expected
    assert decide_levels([score, score], THRESHOLDS, [kind, kind]) == [expected, expected]


def test_a_bar_stops_every_level_above_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(core.levels, "LEVELS", (*LEVELS, ESCORT))
    assert level_cap("call_start.v1") == 2  # barred at 3, so at the escort level too
    assert level_cap("transfer.v1") == 4
    assert decide_level(0.99, (*THRESHOLDS, 0.95), "transfer.v1") == 4


def test_a_visit_threshold_below_the_warnings_still_decides_the_highest_level_reached() -> None:
    from core.levels import candidate_groups, decide_level, decide_levels

    # Connects (capped below a visit) are candidates of the warning and call levels only: those two ascend
    # together, the visit level on its own.
    assert candidate_groups() == (0, 0, 1)
    crossed = (0.5, 0.96, 0.9)  # connects crowded the lower levels above the followed visit threshold
    assert decide_level(0.92, crossed, "call.v1") == 3
    assert decide_level(0.92, crossed, "call_start.v1") == 1  # capped at 2, below its threshold: a warning
    assert decide_level(0.97, crossed, "call_start.v1") == 2
    assert decide_level(0.4, crossed, "call.v1") == 0
    assert decide_levels([0.92, 0.92, 0.4], crossed, ["call.v1", "call_start.v1", "transfer.v1"]) == [3, 1, 0]
    # Ascending thresholds decide as they always did.
    assert decide_levels([0.2, 0.5, 0.95], (0.3, 0.6, 0.9), ["call.v1"] * 3) == [0, 1, 3]
