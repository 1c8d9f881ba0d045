"""Outcome labels from the field (a dump of the labels topic) and police reports as training cases.

A label (``label.v1``, README "Outcome labels") names its subscriber and the episode's span in event time. A
``dissuaded`` or ``money_lost`` outcome (``target`` 1) makes that subscriber's events of the span positives, as a
case.v1 lists its events; ``false_alarm`` (0) leaves them negatives, which rows are by default; ``unreachable``
(None) says nothing and is left out. The topic is at least once: labels are kept one per ``task_id``.

A police report is a ``case.v1`` with a loss, made by the victim days after it: known at its ``reported_ms``
(an optional field) or else ``first_loss_ms`` plus the report delay. Only what was known by a training cut-off
may be trained on: a label from its ``resolved_ms``, a report from when it was made.

A report names the ring's numbers, and the contract says who else they made a case of: anyone who answered one
of them for ``CASE_MIN_ANSWERED_S`` or more. Those people are cases the police never hear of (most lost nothing),
and without them a retrain learns their calls as legitimate (:func:`cases_from_reported_numbers`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.errors import TrainingDataError
from core.events import CallEvent, CallStartEvent, Event, ReportEvent, TransferEvent
from core.outcomes import CASE_MIN_ANSWERED_S, OUTCOME_TARGET
from core.validators import case_report_v1
from models.dataset import read_jsonl

__all__ = [
    "FieldLabels",
    "FieldReports",
    "cases_from_labels",
    "cases_from_reported_numbers",
    "cases_from_reports",
    "labels_known_by",
    "read_labels",
    "report_events",
    "with_reports",
]

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


def labels_known_by(labels: Iterable[dict[str, Any]], cutoff_ms: int | None) -> tuple[list[dict[str, Any]], int]:
    """The labels resolved by ``cutoff_ms`` (all with None), and how many were left out as not yet known.

    A label without ``resolved_ms`` has no known time: with a cut-off it is left out.
    """
    labels = list(labels)
    if cutoff_ms is None:
        return labels, 0
    kept = [lb for lb in labels if lb.get("resolved_ms") is not None and int(lb["resolved_ms"]) <= cutoff_ms]
    return kept, len(labels) - len(kept)


@dataclass(frozen=True)
class FieldReports:
    """The police reports known by a cut-off, as cases, and what was left out."""

    cases: list[dict[str, Any]]
    not_yet_known: int  # made after the cut-off
    without_loss: int  # records with no loss: nobody reports those to the police

    def summary(self) -> dict[str, int]:
        """What the model's metadata records about this source."""
        return {"used": len(self.cases), "not_yet_known": self.not_yet_known, "without_loss": self.without_loss}


def report_known_ms(report: dict[str, Any], delay_ms: int) -> int | None:
    """When a police report was made: its ``reported_ms``, else its loss plus ``delay_ms``; None without a loss."""
    if report.get("reported_ms") is not None:
        return int(report["reported_ms"])
    loss = report.get("first_loss_ms")
    return None if loss is None else int(loss) + delay_ms


def report_events(reports: Iterable[dict[str, Any]], delay_ms: int) -> list[ReportEvent]:
    """``case.v1`` records as the police-reports topic carries them: each record with a loss and fraud numbers,
    made at its ``reported_ms`` (else ``delay_ms`` after its loss), validated as the stream validates them."""
    out = []
    for report in reports:
        known = report_known_ms(report, delay_ms)
        if known is not None and report.get("fraud_numbers"):
            out.append(case_report_v1({**report, "reported_ms": known}))
    return out


def with_reports(events: Iterable[Event], reports: Iterable[dict[str, Any]], delay_ms: int) -> list[Event]:
    """The stream with the police reports in it as the reports topic brings them (:func:`report_events`), unless it
    carries reports of its own: the features then know each reported number from when the service would have."""
    stream = list(events)
    if any(isinstance(e, ReportEvent) for e in stream):
        return stream
    return [*stream, *report_events(reports, delay_ms)]


def cases_from_reports(reports: Iterable[dict[str, Any]], cutoff_ms: int | None, delay_ms: int) -> FieldReports:
    """The reports (``case.v1`` records) made by ``cutoff_ms`` (all with a loss, with None) as training cases."""
    cases: list[dict[str, Any]] = []
    late = lossless = 0
    for report in reports:
        for needed in ("case_id", "victim", "event_ids"):
            if needed not in report:
                raise TrainingDataError(f"police report {report.get('case_id', '?')} lacks {needed}")
        known = report_known_ms(report, delay_ms)
        if known is None:
            lossless += 1
        elif cutoff_ms is not None and known > cutoff_ms:
            late += 1
        else:
            cases.append({**report, "source": "police_report"})
    return FieldReports(cases, late, lossless)


def cases_from_reported_numbers(reports: Sequence[dict[str, Any]], events: Iterable[Event]) -> list[dict[str, Any]]:
    """The other cases of the reported rings: each subscriber who answered a reported number for
    ``CASE_MIN_ANSWERED_S`` or more (victims already reported aside), listing their calls from the ring's numbers
    and transfers to the reported accounts. ``events``: those known by the training cut-off."""
    numbers = {n for report in reports for n in report.get("fraud_numbers") or ()}
    reported_events = {e for report in reports for e in report["event_ids"]}
    reported = {str(report["victim"]) for report in reports}
    listed: dict[str, list[str]] = {}
    is_case: set[str] = set()
    transfers: list[TransferEvent] = []
    accounts: set[str] = set()
    for event in events:
        if isinstance(event, CallEvent | CallStartEvent) and event.caller in numbers and event.callee not in reported:
            listed.setdefault(event.callee, []).append(event.event_id)
            if isinstance(event, CallEvent) and event.answered and event.duration_s >= CASE_MIN_ANSWERED_S:
                is_case.add(event.callee)
        elif isinstance(event, TransferEvent):
            if event.event_id in reported_events:
                accounts.add(event.payee_account)
            elif event.subscriber not in reported:
                transfers.append(event)
    for transfer in transfers:
        if transfer.payee_account in accounts and transfer.subscriber in is_case:
            listed[transfer.subscriber].append(transfer.event_id)
    return [
        {"case_id": f"ring-{victim}", "victim": victim, "event_ids": listed[victim], "source": "reported_number"}
        for victim in sorted(is_case)
    ]
