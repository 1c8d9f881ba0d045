"""The registry of event kinds: a new kind is decoded, dead-lettered when malformed, and ignored by any
stage that has no handler for it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import orjson
import pytest

from core.decode import decode, decode_obj
from core.errors import InvalidEvent
from core.events import CallEvent, TransferEvent
from core.kinds import KINDS, EventKind, from_wire, kind_of, registered, to_wire
from core.validators import phone, text, ts
from features import FeatureEngine
from streams.ingest import Forward, Ignored, Rejected, route_raw

pytestmark = pytest.mark.unit


@dataclass(frozen=True, slots=True)
class PingEvent:
    """A made-up kind: a handset reports it is alive."""

    SCHEMA: ClassVar[str] = "ping.v1"

    event_id: str
    ts_ms: int
    subscriber: str
    schema: Literal["ping.v1"] = "ping.v1"

    @property
    def available_ms(self) -> int:
        return self.ts_ms


def _ping(obj: dict[str, Any]) -> PingEvent:
    return PingEvent(event_id=text(obj, "event_id"), ts_ms=ts(obj), subscriber=phone(obj, "subscriber"))


PING = EventKind("ping.v1", PingEvent, _ping, "calls_topic")
GOOD = {"schema": "ping.v1", "event_id": "p1", "ts_ms": 1_000, "subscriber": "+8613800000001"}
CALL = {
    "schema": "call.v1",
    "event_id": "c1",
    "ts_ms": 1_000,
    "caller": "+8613800000002",
    "callee": "+8613800000001",
    "answered": True,
    "duration_s": 30.0,
    "caller_kind": "mobile",
}


def test_the_contract_kinds_are_registered_with_their_topics() -> None:
    assert KINDS["call.v1"].type is CallEvent and KINDS["call.v1"].topic_setting == "calls_topic"
    assert KINDS["transfer.v1"].type is TransferEvent and KINDS["transfer.v1"].topic_setting == "transfers_topic"


def test_an_unregistered_kind_is_rejected_as_unknown() -> None:
    with pytest.raises(InvalidEvent) as err:
        decode(orjson.dumps(GOOD))
    assert err.value.reason == "unknown_schema"
    assert isinstance(route_raw(orjson.dumps(GOOD), 16_384, None), Rejected)


def test_a_registered_kind_is_decoded_and_round_trips_the_wire_form() -> None:
    with registered(PING):
        event = decode(orjson.dumps(GOOD))
        assert event == PingEvent("p1", 1_000, "+8613800000001")
        assert kind_of(event) is PING
        assert from_wire(orjson.loads(orjson.dumps(to_wire(event)))) == event
    assert "ping.v1" not in KINDS  # the block removed it again


def test_a_malformed_event_of_a_registered_kind_is_dead_lettered_with_its_reason() -> None:
    with registered(PING):
        routed = route_raw(orjson.dumps({**GOOD, "subscriber": "not a number"}), 16_384, None)
        assert isinstance(routed, Rejected) and routed.error.reason == "bad_phone"
        with pytest.raises(InvalidEvent) as err:
            decode_obj({k: v for k, v in GOOD.items() if k != "ts_ms"})
        assert err.value.reason == "missing_field"


def test_stages_without_a_handler_ignore_the_kind() -> None:
    with registered(PING):
        ping = decode(orjson.dumps(GOOD))
        routed = route_raw(orjson.dumps(GOOD), 16_384, None)
        assert isinstance(routed, Ignored) and routed.schema == "ping.v1"  # ingest counts it, forwards nothing
        engine = FeatureEngine()
        assert engine.process(ping) is None  # the feature stages have no handler either
        call = decode_obj(CALL)
        row = engine.process(call)
        assert row is not None and row.event_id == "c1"  # and the known kinds still flow


def test_a_known_kind_is_forwarded_in_the_compact_wire_form() -> None:
    routed = route_raw(orjson.dumps(CALL), 16_384, 12.5)
    assert isinstance(routed, Forward)
    assert routed.key == b"+8613800000002"  # calls go to their caller's partition
    envelope = orjson.loads(routed.envelope)
    assert envelope["t"] == 12.5 and from_wire(envelope["e"]) == decode_obj(CALL)


def test_a_kind_cannot_be_registered_twice() -> None:
    with (
        pytest.raises(ValueError, match="registered twice"),
        registered(EventKind("call.v1", CallEvent, lambda obj: None, "calls_topic")),
    ):
        pass


def test_replay_routes_each_kind_to_its_registered_topic_keyed_by_subscriber() -> None:
    from core.settings import Settings
    from streams.replay import _route

    settings = Settings()
    assert _route(orjson.dumps(CALL), settings) == (31_000.0, "calls.v1", b"+8613800000001")  # known at its end
    with registered(EventKind("ping.v1", PingEvent, _ping, "transfers_topic")):
        assert _route(orjson.dumps(GOOD), settings) == (1_000.0, "transfers.v1", b"+8613800000001")
