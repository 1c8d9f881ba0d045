"""Labelled feature matrices from an event history, built by the serving feature code."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from core.decode import decode
from core.errors import InvalidEvent
from core.events import Event
from features import TICK_SCHEMA, FeatureEngine, FeatureRow, tick_call_id


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Every JSON object of a ``.jsonl`` file."""
    with path.open("rb") as fh:
        return [orjson.loads(line) for line in fh if line.strip()]


@dataclass
class EventFile:
    """The valid events of a file and, by reason, the lines the stream would dead-letter."""

    events: list[Event]
    rejected: dict[str, int]


def load_events(path: Path) -> EventFile:
    """Contract events of a file, validated by the same decoder the stream uses; bad lines are counted."""
    events: list[Event] = []
    rejected: Counter[str] = Counter()
    with path.open("rb") as fh:
        for line in fh:
            if not line.strip():
                continue
            try:
                events.append(decode(line.rstrip(b"\r\n")))
            except InvalidEvent as exc:
                rejected[exc.reason] += 1
    return EventFile(events, dict(rejected))


@dataclass
class Dataset:
    """Feature rows in arrival order, with a label per row (event listed in a case)."""

    rows: list[FeatureRow]
    X: np.ndarray
    y: np.ndarray
    avail_ms: np.ndarray

    @property
    def subscribers(self) -> list[str]:
        """The subscriber of each row."""
        return [r.subscriber for r in self.rows]

    @property
    def transfers(self) -> np.ndarray:
        """Per row, whether it is a transfer's (the rows a payment hold can stop): rows not resting on a call."""
        return np.asarray([not r.is_call for r in self.rows], dtype=bool)

    @property
    def event_rows(self) -> np.ndarray:
        """Per row, whether an event made it (not a tick): what the contract's ``events`` and ``pr_auc`` count."""
        return np.asarray([r.schema != TICK_SCHEMA for r in self.rows], dtype=bool)

    @property
    def kinds(self) -> list[str]:
        """The event kind (schema) of each row, for the levels' caps ("" for a row recorded before kinds)."""
        return [r.schema for r in self.rows]

    def subset(self, keep: np.ndarray) -> Dataset:
        """The rows where the boolean mask ``keep`` is set, in the same order."""
        rows = [r for r, k in zip(self.rows, keep.tolist(), strict=True) if k]
        return Dataset(rows, self.X[keep], self.y[keep], self.avail_ms[keep])


def concat_datasets(parts: Sequence[Dataset]) -> Dataset:
    """The rows of several histories as one, in arrival order (a stable merge by ``avail_ms``).

    Each part keeps the features its own history gave it; pooling histories that share a calendar (e.g.
    simulated worlds with one start) keeps a time-ordered split meaningful across all of them.
    """
    if not parts:
        raise ValueError("nothing to concatenate")
    parts = [p for p in parts if len(p.rows)] or list(parts[:1])  # an empty part's X has no feature axis
    avail = np.concatenate([p.avail_ms for p in parts])
    order = np.argsort(avail, kind="stable")
    rows = [row for p in parts for row in p.rows]
    return Dataset(
        [rows[i] for i in order.tolist()],
        np.concatenate([p.X for p in parts])[order],
        np.concatenate([p.y for p in parts])[order],
        avail[order],
    )


def _listed(row: FeatureRow, positive: set[str]) -> bool:
    # A tick is no event: it counts as its call (whose join id a case lists as the call record's event id).
    return (tick_call_id(row.event_id) if row.schema == TICK_SCHEMA else row.event_id) in positive


def case_labels(rows: Sequence[FeatureRow], cases: Iterable[dict[str, Any]]) -> np.ndarray:
    """1 for each row whose event a case lists (and each tick of such a call), else 0."""
    positive = {eid for case in cases for eid in case["event_ids"]}
    return np.asarray([1 if _listed(r, positive) else 0 for r in rows], dtype=np.int8)


def build_dataset(events: Iterable[Event], cases: Iterable[dict[str, Any]]) -> Dataset:
    """Run the feature engine over events; label rows whose event a case lists, and ticks of such a call."""
    rows = list(FeatureEngine().run(events))
    X = np.asarray([r.values for r in rows], dtype=np.float64)
    avail = np.asarray([r.avail_ms for r in rows], dtype=np.int64)
    return Dataset(rows, X, case_labels(rows, cases), avail)
