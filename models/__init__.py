"""Models: training, the registry, scoring, explanations, evaluation and model cards.

Imports the ground floor and ``features``. Other packages import from here, not from the modules; the card
(matplotlib) is loaded only when one of its names is first used.
"""

from __future__ import annotations

from typing import Any

from models.budget import threshold_for_budget
from models.compiled import compile_version
from models.dataset import Dataset, build_dataset, case_labels, concat_datasets, load_events, read_jsonl
from models.episodes import count_tasks
from models.evaluate import (
    OUTCOME_DELAY_MS,
    TASK_LEVEL,
    after_warmup,
    evaluate,
    evaluate_dataset,
    followed_levels,
    followed_summary,
    fraud_contacts,
    judged_after_warmup,
    operating_curve,
)
from models.explain import reasons
from models.feedback import (
    FollowConfig,
    FollowResult,
    ModelSwap,
    best_in_windows,
    best_per_level,
    candidate_floor,
    carry_over,
    false_share,
    follow_offline,
    follow_thresholds,
    match_alert_rate,
    threshold_bounds,
    unseen_window,
)
from models.field_labels import (
    FieldLabels,
    FieldReports,
    cases_from_labels,
    cases_from_reported_numbers,
    cases_from_reports,
    labels_known_by,
    read_labels,
    report_events,
    with_reports,
)
from models.registry import ModelRegistry, ModelVersion, check_features
from models.scoring import Scorer
from models.train import ResidentSpan, TrainConfig, subscriber_folds, train_model

__all__ = [
    "COLD_START_KEYS",
    "OUTCOME_DELAY_MS",
    "TASK_LEVEL",
    "Dataset",
    "FieldLabels",
    "FieldReports",
    "FollowConfig",
    "FollowResult",
    "ModelRegistry",
    "ModelSwap",
    "ModelVersion",
    "ResidentSpan",
    "Scorer",
    "TrainConfig",
    "after_warmup",
    "best_in_windows",
    "best_per_level",
    "build_dataset",
    "candidate_floor",
    "carry_over",
    "case_labels",
    "cases_from_labels",
    "cases_from_reported_numbers",
    "cases_from_reports",
    "check_features",
    "compile_version",
    "concat_datasets",
    "count_tasks",
    "evaluate",
    "evaluate_dataset",
    "false_share",
    "field_trial_table",
    "follow_offline",
    "follow_thresholds",
    "followed_levels",
    "followed_summary",
    "fraud_contacts",
    "generalisation_tables",
    "judged_after_warmup",
    "labels_known_by",
    "load_events",
    "match_alert_rate",
    "operating_curve",
    "read_jsonl",
    "read_labels",
    "reasons",
    "report_events",
    "subscriber_folds",
    "threshold_bounds",
    "threshold_for_budget",
    "train_model",
    "unseen_window",
    "with_reports",
    "write_model_card",
]

_LAZY = {"COLD_START_KEYS", "field_trial_table", "generalisation_tables", "write_model_card"}


def __getattr__(name: str) -> Any:
    # The card pulls in matplotlib: only a command that writes a card pays for it.
    if name in _LAZY:
        from models import card

        return getattr(card, name)
    raise AttributeError(f"module 'models' has no attribute {name!r}")
