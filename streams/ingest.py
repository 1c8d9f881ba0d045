"""Ingest's decision for one raw input message: forward it (key and envelope), dead-letter it, or ignore it.

A pure function of the bytes, so the registry's promise can be tested without a broker: a malformed message of
any kind is rejected with its reason, and a valid message of a kind no stage handles is ignored (and counted).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from core.decode import decode
from core.errors import InvalidEvent
from core.events import CallEvent, TransferEvent
from core.kinds import Handlers, to_wire
from features import payee_key

__all__ = ["ROUTE_KEYS", "Forward", "Ignored", "Rejected", "route_raw"]


@dataclass(frozen=True, slots=True)
class Forward:
    """A valid event for the caller-keyed hop."""

    schema: str
    key: bytes
    envelope: bytes


@dataclass(frozen=True, slots=True)
class Rejected:
    """A message that breaks the contract: it goes to the dead-letter topic with the error's reason."""

    error: InvalidEvent


@dataclass(frozen=True, slots=True)
class Ignored:
    """A valid event of a kind that no stage of this worker handles."""

    schema: str


# The key of the caller-keyed hop per kind. Transfers take the same two hops as calls so that, under load, a
# transfer does not overtake the call that came before it; on this hop they are keyed by payee (``callers``
# adds the payee's features): like a subscriber's calls from different numbers, its transfers to different
# payees may then reach ``score`` in another order than they were sent.
ROUTE_KEYS: Handlers[Callable[[Any], str]] = Handlers(
    {CallEvent: lambda call: call.caller, TransferEvent: lambda transfer: payee_key(transfer.payee_account)}
)


def route_raw(raw: bytes, max_bytes: int, broker_ts: float | None) -> Forward | Rejected | Ignored:
    """What ingest does with one raw message; ``broker_ts`` (seconds) rides along for the latency metric."""
    try:
        event = decode(raw, max_bytes)
    except InvalidEvent as exc:
        return Rejected(exc)
    route_key = ROUTE_KEYS.get(event)
    if route_key is None:
        return Ignored(event.schema)
    envelope = orjson.dumps({"e": to_wire(event), "t": broker_ts})
    return Forward(event.schema, route_key(event).encode(), envelope)
