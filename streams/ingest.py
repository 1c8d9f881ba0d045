"""Ingest's decision for one raw input message: forward it (key and envelope), dead-letter it, or ignore it.

A pure function of the bytes, so the registry's promise can be tested without a broker: a malformed message of
any kind is rejected with its reason, and a valid message of a kind no stage handles is ignored (and counted).
"""

from __future__ import annotations

from dataclasses import dataclass

import orjson

from core.decode import decode
from core.errors import InvalidEvent
from core.kinds import to_wire
from features import feedback_of, steps_for

__all__ = ["Fanout", "Forward", "Ignored", "Rejected", "route_raw"]


@dataclass(frozen=True, slots=True)
class Forward:
    """A valid event for the caller-keyed hop."""

    schema: str
    key: bytes
    envelope: bytes


@dataclass(frozen=True, slots=True)
class Fanout:
    """A valid event that only tells key states something (a police report): one hop message per key."""

    schema: str
    messages: tuple[tuple[bytes, bytes], ...]


@dataclass(frozen=True, slots=True)
class Rejected:
    """A message that breaks the contract: it goes to the dead-letter topic with the error's reason."""

    error: InvalidEvent


@dataclass(frozen=True, slots=True)
class Ignored:
    """A valid event of a kind that no stage of this worker handles."""

    schema: str


# The caller-keyed hop is keyed by each kind's key-stage key (``features.steps``): a call's calling number, a
# transfer's payee. Transfers take the same two hops as calls so that, under load, a transfer does not overtake
# the call that came before it; like a subscriber's calls from different numbers, its transfers to different
# payees may then reach ``score`` in another order than they were sent.


def route_raw(raw: bytes, max_bytes: int, broker_ts: float | None) -> Forward | Fanout | Rejected | Ignored:
    """What ingest does with one raw message; ``broker_ts`` (seconds) rides along for the latency metric."""
    try:
        event = decode(raw, max_bytes)
    except InvalidEvent as exc:
        return Rejected(exc)
    told = feedback_of(event)
    if told is not None:
        return Fanout(event.schema, tuple((fb.key.encode(), orjson.dumps(fb.to_envelope())) for fb in told))
    steps = steps_for(event)
    if steps is None:
        return Ignored(event.schema)
    envelope = orjson.dumps({"e": to_wire(event), "t": broker_ts})
    return Forward(event.schema, steps.key_of(event).encode(), envelope)
