"""Outcome labels from the field (a dump of the labels topic) as training cases.

A label (``label.v1``, README "Outcome labels") names its subscriber and the episode's span in event time. A
``dissuaded`` or ``money_lost`` outcome (``target`` 1) makes that subscriber's events of the span positives, as a
case.v1 lists its events; ``false_alarm`` (0) leaves them negatives, which rows are by default; ``unreachable``
(None) says nothing and is left out. The topic is at least once: labels are kept one per ``task_id``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.errors import TrainingDataError
from core.events import Event
from core.outcomes import OUTCOME_TARGET
from models.dataset import read_jsonl

__all__ = ["FieldLabels", "cases_from_labels", "read_labels"]

_NEEDED = ("task_id", "subscriber", "outcome", "episode_start_ms", "episode_end_ms")


@dataclass(frozen=True)
class FieldLabels:
    """The cases the labels make, and how many labels of each kind went into them."""

    cases: list[dict[str, Any]]
    positives: int
    negatives: int
    unknown: int
    duplicates: int
    intervened: int  # positives where the visit stopped the payment (the events show no loss)

    def summary(self) -> dict[str, int]:
        """What the model's metadata records about this source."""
        return {
            "positives": self.positives,
            "negatives": self.negatives,
            "unknown_left_out": self.unknown,
            "duplicates_dropped": self.duplicates,
            "intervened": self.intervened,
        }


def read_labels(path: Path) -> tuple[list[dict[str, Any]], int]:
    """The labels of a JSONL dump, one per task (the last copy wins); and how many copies were dropped."""
    by_task: dict[str, dict[str, Any]] = {}
    rows = read_jsonl(path)
    for n, row in enumerate(rows, 1):
        missing = [f for f in _NEEDED if f not in row]
        if missing:
            raise TrainingDataError(f"{path}: label {n} lacks {', '.join(missing)}")
        by_task[str(row["task_id"])] = row
    return list(by_task.values()), len(rows) - len(by_task)


def cases_from_labels(labels: Iterable[dict[str, Any]], events: Iterable[Event], duplicates: int = 0) -> FieldLabels:
    """One case per positive label: the subscriber's events within the label's episode span."""
    positives = [lb for lb in labels if _target(lb) == 1]
    all_labels = list(labels)
    spans: dict[str, list[tuple[int, int, dict[str, Any]]]] = {}
    for lb in positives:
        spans.setdefault(str(lb["subscriber"]), []).append((int(lb["episode_start_ms"]), int(lb["episode_end_ms"]), lb))
    listed: dict[str, list[str]] = {str(lb["task_id"]): [] for lb in positives}
    for event in events:
        for start, end, lb in spans.get(event.subscriber, ()):
            if start <= event.ts_ms <= end:
                listed[str(lb["task_id"])].append(event.event_id)
    cases = [
        {
            "case_id": f"label-{lb['task_id']}",
            "victim": str(lb["subscriber"]),
            "event_ids": listed[str(lb["task_id"])],
            "source": "field_label",
            "outcome": lb["outcome"],
        }
        for lb in positives
        if listed[str(lb["task_id"])]
    ]
    targets = [_target(lb) for lb in all_labels]
    return FieldLabels(
        cases=cases,
        positives=len(positives),
        negatives=sum(1 for t in targets if t == 0),
        unknown=sum(1 for t in targets if t is None),
        duplicates=duplicates,
        intervened=sum(1 for lb in positives if lb.get("intervened")),
    )


def _target(label: dict[str, Any]) -> int | None:
    if "target" in label:
        return None if label["target"] is None else int(label["target"])
    return OUTCOME_TARGET.get(str(label.get("outcome")))
