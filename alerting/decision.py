"""The typed hand-over from scoring to alerting."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["Decision", "TransferRef"]


@dataclass(frozen=True, slots=True)
class TransferRef:
    """What a hold.v1 message says about the initiated transfer a decision scored."""

    event_id: str
    ts_ms: int
    payer_account: str
    payee_account: str
    amount: float
    currency: str
    # Wall time the transfer reached the broker (None: unknown): a hold's latency counts from here.
    received_at_s: float | None = None


@dataclass(frozen=True, slots=True)
class Decision:
    """A scored event whose risk reached at least level 1; alerting decides what to do with it."""

    subscriber: str
    event_id: str
    ts_ms: int
    score: float
    level: int  # a number of core.levels.LEVELS (1 warning, 2 call centre, 3 face to face)
    model_version: str
    reasons: tuple[str, ...] = field(default_factory=tuple)
    lat: float | None = None
    lon: float | None = None
    decided_at_s: float | None = None  # wall clock of the scoring decision; None: when alerting got it
    # Set on a transfer scored at or above the model's hold threshold: the bank is told to hold it.
    hold: TransferRef | None = None
    # The call (its join id) or transfer (its event id) scored; None: unknown. A new occasion in a case that
    # already had this level's warning or call may repeat it (core.levels.REPEATED_ACTIONS).
    occasion: str | None = None
    in_call: bool = False  # the person was on a (signalled) call when this was scored: the call is the emergency
    threshold: float | None = None  # the threshold of ``level`` it was decided with (task and label carry it)
