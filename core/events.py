"""Typed input events of the contract (call.v1, transfer.v1)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

CALLER_KINDS: tuple[str, ...] = ("mobile", "landline", "overseas", "virtual", "voip", "unknown")
CHANNELS: tuple[str, ...] = ("mobile_app", "online_bank", "atm", "counter", "third_party")


@dataclass(frozen=True, slots=True)
class CallEvent:
    """One finished telephone call; ``ts_ms`` is its start."""

    event_id: str
    ts_ms: int
    caller: str
    callee: str
    answered: bool
    duration_s: float
    caller_kind: str
    callee_lat: float | None = None
    callee_lon: float | None = None
    schema: Literal["call.v1"] = "call.v1"

    @property
    def subscriber(self) -> str:
        """The possible victim: the key calls are partitioned by."""
        return self.callee


@dataclass(frozen=True, slots=True)
class TransferEvent:
    """One money transfer at the moment it is initiated."""

    event_id: str
    ts_ms: int
    subscriber: str
    payer_account: str
    payee_account: str
    amount: float
    currency: str
    channel: str
    lat: float | None = None
    lon: float | None = None
    schema: Literal["transfer.v1"] = "transfer.v1"


Event = CallEvent | TransferEvent
