"""Typed input events of the contract (``call.v1``, ``transfer.v1``, ``call_start.v1``, and police reports as
``case.v1`` records): what every stage reads.

Each kind is a frozen dataclass whose field order is its compact wire form on the internal hops (see
``core.kinds``); ``subscriber`` is the key its topic is partitioned by and ``available_ms`` the event time at
which the service can know it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

__all__ = [
    "CALLER_KINDS",
    "CHANNELS",
    "CallEvent",
    "CallStartEvent",
    "Event",
    "ReportEvent",
    "TransferEvent",
    "call_join_key",
    "occasion_of",
]

CALLER_KINDS: tuple[str, ...] = ("mobile", "landline", "overseas", "virtual", "voip", "unknown")
CHANNELS: tuple[str, ...] = ("mobile_app", "online_bank", "atm", "counter", "third_party")


@dataclass(frozen=True, slots=True)
class CallEvent:
    """One finished telephone call; ``ts_ms`` is its start."""

    SCHEMA: ClassVar[str] = "call.v1"

    event_id: str
    ts_ms: int
    caller: str
    callee: str
    answered: bool
    duration_s: float
    caller_kind: str
    callee_lat: float | None = None
    callee_lon: float | None = None
    call_id: str | None = None  # the id its call_start.v1 carries; last, so older wire lists still read
    schema: Literal["call.v1"] = "call.v1"

    @property
    def subscriber(self) -> str:
        """The possible victim: the key calls are partitioned by."""
        return self.callee

    @property
    def available_ms(self) -> int:
        """A call is reported when it ends."""
        return self.ts_ms + int(self.duration_s * 1000)


@dataclass(frozen=True, slots=True)
class TransferEvent:
    """One money transfer at the moment it is initiated."""

    SCHEMA: ClassVar[str] = "transfer.v1"

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

    @property
    def available_ms(self) -> int:
        """A transfer is reported when it is initiated."""
        return self.ts_ms


@dataclass(frozen=True, slots=True)
class CallStartEvent:
    """Signalling: an answered call has just connected; the ``call.v1`` that ends it comes later."""

    SCHEMA: ClassVar[str] = "call_start.v1"

    event_id: str
    call_id: str
    ts_ms: int
    caller: str
    callee: str
    caller_kind: str
    callee_lat: float | None = None
    callee_lon: float | None = None
    schema: Literal["call_start.v1"] = "call_start.v1"

    @property
    def subscriber(self) -> str:
        """The possible victim, as for the call it starts."""
        return self.callee

    @property
    def available_ms(self) -> int:
        """Signalling is known the moment the call connects."""
        return self.ts_ms


@dataclass(frozen=True, slots=True)
class ReportEvent:
    """A police report: a ``case.v1`` record a victim's complaint produced, known from ``ts_ms`` (its
    ``reported_ms``, an optional field of the contract that the reports topic requires). Its ``fraud_numbers``
    are confirmed fraud lines from then on: whoever answers one for long is a case by the contract's definition."""

    SCHEMA: ClassVar[str] = "case.v1"

    event_id: str  # "report:" + the case id: a repeat of the same report is one report
    ts_ms: int
    case_id: str
    victim: str
    fraud_numbers: tuple[str, ...]
    schema: Literal["case.v1"] = "case.v1"

    @property
    def subscriber(self) -> str:
        """The victim who reported (the topic's key)."""
        return self.victim

    @property
    def available_ms(self) -> int:
        """A report is known once it is made."""
        return self.ts_ms


def call_join_key(call: CallEvent) -> str:
    """The id joining a call record to its ``call_start.v1``: its ``call_id`` if given, else its ``event_id``."""
    return call.call_id or call.event_id


def occasion_of(event: CallEvent | TransferEvent | CallStartEvent) -> str:
    """The call or transfer an event is part of: a call's connect, its timer ticks and its end share the call's
    join id; a transfer is its own. A new occasion in an open case may warn again."""
    if isinstance(event, CallEvent):
        return call_join_key(event)
    if isinstance(event, CallStartEvent):
        return event.call_id
    return event.event_id


Event = CallEvent | TransferEvent | CallStartEvent | ReportEvent
