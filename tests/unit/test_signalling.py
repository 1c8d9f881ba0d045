"""Call signalling (``call_start.v1``): validation, routing, the join with its call record, and what is on the line."""

from __future__ import annotations

import math
from typing import Any

import orjson
import pytest

from core.decode import decode_obj
from core.errors import InvalidEvent
from core.events import CallEvent, CallStartEvent, TransferEvent
from features.clock import HOUR_MS, MINUTE_MS
from features.params import OPEN_CALL_TIMEOUT_MS
from features.pipeline import FeatureEngine
from features.state import SubscriberState
from features.vector import FEATURE_INDEX
from sandbox.simulate import CityConfig, simulate
from streams.ingest import Forward, Rejected, route_raw

pytestmark = pytest.mark.unit

T0 = 1_767_254_400_000  # 2026-01-01T08:00Z, 16:00 local
SUB = "+8613900000000"
RING = "+85261234567"
MUM = "+8613800000001"


def start_obj(**over: Any) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "schema": "call_start.v1",
        "event_id": "s-1",
        "call_id": "c-1",
        "ts_ms": T0,
        "caller": RING,
        "callee": SUB,
        "caller_kind": "mobile",
    }
    obj.update(over)
    return obj


def start(eid: str, call_id: str, ts: int, caller: str = RING) -> CallStartEvent:
    return CallStartEvent(eid, call_id, ts, caller, SUB, "mobile")


def end(eid: str, ts: int, dur: float, caller: str = RING, call_id: str | None = None) -> CallEvent:
    return CallEvent(eid, ts, caller, SUB, True, dur, "mobile", call_id=call_id)


def pay(eid: str, ts: int, amount: float = 50_000.0) -> TransferEvent:
    return TransferEvent(eid, ts, SUB, "6222000011112222", "ACC-MULE-1", amount, "CNY", "mobile_app")


def values(row: Any, *names: str) -> list[float]:
    return [row.values[FEATURE_INDEX[n]] for n in names]


# -- the contract ------------------------------------------------------------------------------------


def test_a_valid_call_start_decodes_with_its_call_id() -> None:
    event = decode_obj(start_obj(callee_lat=31.2, callee_lon=121.5))
    assert isinstance(event, CallStartEvent)
    assert (event.call_id, event.subscriber, event.available_ms, event.callee_lat) == ("c-1", SUB, T0, 31.2)


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"call_id": None}, "missing_field"),
        ({"call_id": ""}, "bad_value"),
        ({"caller": "12345"}, "bad_phone"),
        ({"caller_kind": "pigeon"}, "bad_value"),
        ({"caller_kind": ["mobile"]}, "wrong_type"),
        ({"ts_ms": "yesterday"}, "wrong_type"),
        ({"callee_lat": 95.0}, "bad_value"),
    ],
)
def test_a_malformed_call_start_is_rejected_with_its_reason(change: dict[str, Any], reason: str) -> None:
    obj = {k: v for k, v in start_obj(**change).items() if v is not None}
    with pytest.raises(InvalidEvent) as err:
        decode_obj(obj)
    assert err.value.reason == reason
    routed = route_raw(orjson.dumps(obj), 1 << 16, None)
    assert isinstance(routed, Rejected) and routed.error.reason == reason


def test_a_call_start_is_routed_by_its_calling_number_like_its_call() -> None:
    routed = route_raw(orjson.dumps(start_obj()), 1 << 16, 1.0)
    assert isinstance(routed, Forward)
    assert (routed.schema, routed.key) == ("call_start.v1", RING.encode())


def test_a_call_record_may_carry_the_call_id() -> None:
    obj = {
        "schema": "call.v1",
        "event_id": "c-9",
        "ts_ms": T0,
        "caller": RING,
        "callee": SUB,
        "answered": True,
        "duration_s": 60,
        "caller_kind": "mobile",
    }
    assert decode_obj(obj).call_id is None
    assert decode_obj({**obj, "call_id": "x-9"}).call_id == "x-9"
    with pytest.raises(InvalidEvent):
        decode_obj({**obj, "call_id": 9})


# -- on the line ---------------------------------------------------------------------------------------


def test_a_transfer_during_a_call_with_a_new_number_says_so() -> None:
    engine = FeatureEngine()
    first = engine.process(start("s-1", "c-1", T0))
    assert first is not None and first.schema == "call_start.v1"
    assert values(first, "is_call_start", "oncall_calls", "oncall_stranger", "oncall_elapsed_s") == [1, 1, 1, 0]
    assert math.isnan(first.values[FEATURE_INDEX["call_duration_s"]])
    during = engine.process(pay("t-1", T0 + 25 * MINUTE_MS))
    assert during is not None
    assert values(during, "is_call_start", "oncall_calls", "oncall_stranger", "oncall_elapsed_s") == [0, 1, 1, 1500]
    after = engine.process(end("c-1", T0, 1800))  # ends at T0 + 30 min and closes the call
    assert after is not None and values(after, "oncall_calls") == [0]
    later = engine.process(pay("t-2", T0 + 40 * MINUTE_MS))
    assert later is not None and values(later, "oncall_calls", "oncall_stranger") == [0, 0]


def test_a_known_number_on_the_line_is_not_a_stranger() -> None:
    engine = FeatureEngine()
    engine.process(end("c-0", T0 - 3 * 86_400_000, 300, caller=MUM))
    engine.process(start("s-1", "c-1", T0, caller=MUM))
    row = engine.process(pay("t-1", T0 + MINUTE_MS))
    assert row is not None and values(row, "oncall_calls", "oncall_stranger") == [1, 0]


@pytest.mark.parametrize(
    "ending",
    [
        end("c-1", T0, 600),  # the record's event id is the start's call id
        end("r-7", T0, 600, call_id="c-1"),  # the record carries the call id
        end("r-7", T0, 600, call_id="other-id-scheme"),  # neither: caller, callee and start time
    ],
)
def test_the_call_record_closes_its_call_whichever_way_it_joins(ending: CallEvent) -> None:
    state = SubscriberState()
    engine = FeatureEngine()
    engine.subscribers[SUB] = state
    engine.process(start("s-1", "c-1", T0))
    assert list(state.open_calls) == ["c-1"]
    engine.process(ending)
    assert state.open_calls == {}


def test_signalling_after_its_call_record_opens_nothing() -> None:
    engine = FeatureEngine()
    engine.process(end("c-1", T0, 120))
    late = engine.process(start("s-1", "c-1", T0))
    assert late is not None and values(late, "oncall_calls") == [0]
    row = engine.process(pay("t-1", T0 + 3 * MINUTE_MS))
    assert row is not None and values(row, "oncall_calls") == [0]


def test_a_call_whose_record_never_comes_is_closed_by_event_time() -> None:
    engine = FeatureEngine()
    engine.process(start("s-1", "lost", T0))
    inside = engine.process(pay("t-1", T0 + OPEN_CALL_TIMEOUT_MS - MINUTE_MS))
    assert inside is not None and values(inside, "oncall_calls") == [1]
    beyond = engine.process(pay("t-2", T0 + OPEN_CALL_TIMEOUT_MS + MINUTE_MS))
    assert beyond is not None and values(beyond, "oncall_calls") == [0]


def test_a_repeated_call_start_changes_nothing() -> None:
    engine = FeatureEngine()
    assert engine.process(start("s-1", "c-1", T0)) is not None
    assert engine.process(start("s-1", "c-1", T0)) is None
    assert len(engine.subscribers[SUB].open_calls) == 1


def test_the_block_describes_the_new_numbers_call_first() -> None:
    engine = FeatureEngine()
    engine.process(end("c-0", T0 - 3 * 86_400_000, 300, caller=MUM))
    engine.process(start("s-1", "c-1", T0 - HOUR_MS, caller=MUM))  # older, but a known number
    engine.process(start("s-2", "c-2", T0))
    row = engine.process(pay("t-1", T0 + 10 * MINUTE_MS))
    assert row is not None
    assert values(row, "oncall_calls", "oncall_stranger", "oncall_elapsed_s") == [2, 1, 600]


def test_open_calls_survive_the_state_round_trip_and_an_older_state_reads() -> None:
    state = SubscriberState()
    engine = FeatureEngine()
    engine.subscribers[SUB] = state
    engine.process(start("s-1", "c-1", T0))
    engine.process(end("c-0", T0 - MINUTE_MS, 30, caller=MUM))
    back = SubscriberState.from_obj(orjson.loads(orjson.dumps(state.to_obj())))
    assert back.open_calls == state.open_calls and "c-0" in back.ended
    older = state.to_obj()
    del older["o"], older["e"]
    assert SubscriberState.from_obj(older).open_calls == {}


# -- the simulator -------------------------------------------------------------------------------------


def test_the_simulator_signals_a_share_of_answered_calls_and_lists_them_in_the_cases() -> None:
    plain = simulate(CityConfig(subscribers=300, days=1.0, seed=4))
    full = simulate(CityConfig(subscribers=300, days=1.0, seed=4, signalling=1.0))
    half = simulate(CityConfig(subscribers=300, days=1.0, seed=4, signalling=0.5))
    answered = sum(1 for e in plain.events if e["schema"] == "call.v1" and e["answered"])
    starts = [e for e in full.events if e["schema"] == "call_start.v1"]
    assert plain.meta["call_starts"] == 0 and len(starts) == answered == full.meta["call_starts"]
    assert 0.4 * answered < half.meta["call_starts"] < 0.6 * answered
    # The rest of the city does not change with the share.
    assert [e for e in full.events if e["schema"] != "call_start.v1"] == plain.events
    calls = {e["event_id"]: e for e in plain.events if e["schema"] == "call.v1"}
    for s in starts:
        assert decode_obj(s).ts_ms == calls[s["call_id"]]["ts_ms"]
    listed = {e for case in full.cases for e in case["event_ids"] if e.startswith("s-")}
    case_calls = {e for case in full.cases for e in case["event_ids"] if calls.get(e, {}).get("answered")}
    assert listed and len(listed) == len(case_calls)


def test_a_connect_leaves_its_callers_state_as_it_was() -> None:
    """Serving spares a connect's caller a changelog write (``writes_key_state``): the step must not change it."""
    from features.steps import steps_for
    from streams import encode_state

    engine = FeatureEngine()
    engine.process(end("e-0", T0 - HOUR_MS, 300.0))
    caller = engine.callers[RING]
    before = encode_state(caller)
    steps = steps_for(start("s-9", "c-9", T0))
    assert steps is not None and not steps.writes_key_state
    snap = steps.key_stage(caller, start("s-9", "c-9", T0))
    assert snap is not None and snap.calls_24h == 1
    assert encode_state(caller) == before
    assert steps_for(end("e-1", T0, 30.0)).writes_key_state  # type: ignore[union-attr]
