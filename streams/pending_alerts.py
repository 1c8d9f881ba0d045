"""Alerts on their way from ``score`` to ``explain``: a scored risky row, not yet explained or acted on.

Why a topic between them: SHAP costs ~4.5 us per tree and row (about 4.5 ms per alert on a 3-model
ensemble), and while ``score`` awaited it, no other batch was scored. On the topic the alert is durable
before its event counts as seen, and the explanation runs beside scoring instead of in front of it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import orjson

from alerting import Decision, TransferRef
from core.errors import MalformedPendingAlert
from features import FEATURE_INDEX, FeatureRow, json_values

_ON_CALL = FEATURE_INDEX["oncall_calls"]

__all__ = ["PendingAlert", "decode_pending", "encode_pending", "holds_first"]


@dataclass(frozen=True, slots=True)
class PendingAlert:
    """A row that reached a risk level, with the model version that scored it."""

    row: FeatureRow
    score: float
    level: int
    model_version: str
    decided_at_s: float  # wall clock of the decision, for the hand-off's own latency
    hold: TransferRef | None = None  # a transfer scored at or above the hold threshold
    occasion: str | None = None  # the call (join id) or transfer (event id) the row scored
    threshold: float | None = None  # the threshold of the level reached, as the budget had it then

    @property
    def in_call(self) -> bool:
        """The person was on a signalled call when the row was scored."""
        return self.row.values[_ON_CALL] >= 1

    def decision(self, reasons: tuple[str, ...] = (), *, located: bool = True) -> Decision:
        """The decision alerting acts on; ``located=False`` leaves out where the person is (no responder search)."""
        row = self.row
        return Decision(
            subscriber=row.subscriber,
            event_id=row.event_id,
            ts_ms=row.avail_ms,
            score=self.score,
            level=self.level,
            model_version=self.model_version,
            reasons=reasons,
            lat=row.lat if located else None,
            lon=row.lon if located else None,
            decided_at_s=self.decided_at_s,
            hold=self.hold,
            occasion=self.occasion,
            in_call=self.in_call,
            threshold=self.threshold,
        )


def encode_pending(alert: PendingAlert) -> bytes:
    """JSON of a pending alert (NaN features as null)."""
    row = alert.row
    record: dict[str, Any] = {
        "e": row.event_id,
        "s": row.subscriber,
        "a": row.avail_ms,
        "c": row.is_call,
        "k": row.schema,
        "v": json_values(row.values),
        "la": row.lat,
        "lo": row.lon,
        "r": alert.score,
        "l": alert.level,
        "m": alert.model_version,
        "d": alert.decided_at_s,
    }
    if alert.occasion is not None:
        record["o"] = alert.occasion
    if alert.threshold is not None:
        record["t"] = alert.threshold
    if alert.hold is not None:
        h = alert.hold
        record["h"] = [h.event_id, h.ts_ms, h.payer_account, h.payee_account, h.amount, h.currency, h.received_at_s]
    return orjson.dumps(record)


def decode_pending(raw: bytes) -> PendingAlert:
    """The pending alert of a record written by :func:`encode_pending`."""
    try:
        d = orjson.loads(raw)
        row = FeatureRow(
            event_id=d["e"],
            subscriber=d["s"],
            avail_ms=int(d["a"]),
            is_call=bool(d["c"]),
            values=tuple(math.nan if v is None else float(v) for v in d["v"]),
            lat=d["la"],
            lon=d["lo"],
            schema=str(d.get("k") or ""),  # absent in records of a worker before signalling
        )
        # "h" is absent from records of a worker from before holds (and of alerts that hold nothing).
        h = d.get("h")
        # Its 7th element, the receipt time, is absent from records of a worker before hold latency counted from it.
        received = float(h[6]) if h and len(h) > 6 and h[6] is not None else None
        hold = TransferRef(str(h[0]), int(h[1]), str(h[2]), str(h[3]), float(h[4]), str(h[5]), received) if h else None
        occasion = d.get("o")  # absent from records of a worker before repeated warnings
        threshold = d.get("t")  # absent from records of a worker before labels carried it
        return PendingAlert(
            row,
            float(d["r"]),
            int(d["l"]),
            str(d["m"]),
            float(d["d"]),
            hold,
            None if occasion is None else str(occasion),
            None if threshold is None else float(threshold),
        )
    except (orjson.JSONDecodeError, KeyError, IndexError, TypeError, ValueError) as exc:
        raise MalformedPendingAlert(f"{type(exc).__name__}: {exc}") from exc


def holds_first(alerts: list[PendingAlert]) -> list[list[int]]:
    """A batch's alerts in the order they are explained and acted on: groups of indexes, each explained at once.

    A bank waits for a hold while a responder's task can wait a few milliseconds more: the alerts of every
    subscriber with a hold in the batch go first (each subscriber's own alerts stay in event order), then the rest.
    """
    held = {a.row.subscriber for a in alerts if a.hold is not None}
    first = [i for i, a in enumerate(alerts) if a.row.subscriber in held]
    rest = [i for i, a in enumerate(alerts) if a.row.subscriber not in held]
    return [group for group in (first, rest) if group]
