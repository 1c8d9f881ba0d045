"""The internal hops' wire form: compact and trusted, and still readable when an older worker wrote it."""

from __future__ import annotations

import orjson
import pytest

from core.decode import decode_obj
from core.kinds import to_wire
from features import Feedback
from streams.agents import _in_arrival_order

pytestmark = pytest.mark.unit

CALL = {
    "schema": "call.v1",
    "event_id": "c1",
    "ts_ms": 5_000,
    "caller": "+8613800000002",
    "callee": "+8613800000001",
    "answered": True,
    "duration_s": 30.0,
    "caller_kind": "mobile",
}
TRANSFER = {
    "schema": "transfer.v1",
    "event_id": "t1",
    "ts_ms": 1_000,
    "subscriber": "+8613800000001",
    "payer_account": "A1",
    "payee_account": "B1",
    "amount": 500.0,
    "currency": "CNY",
    "channel": "mobile_app",
}


def test_a_pack_of_compact_and_old_envelopes_reads_back_in_availability_order() -> None:
    call, transfer = decode_obj(CALL), decode_obj(TRANSFER)
    packed = orjson.dumps(
        [{"e": to_wire(call), "t": 1.0}, {"e": TRANSFER, "t": 1.0}]  # the second as a pre-upgrade worker wrote it
    )
    events = [event for event, _ in _in_arrival_order([packed])]
    assert events == [transfer, call]  # the transfer became known at 1 s, the call when it ended at 35 s


def test_feedback_in_a_pack_goes_to_its_handler_and_is_not_an_event() -> None:
    seen = []
    packed = orjson.dumps([{"f": ["+8613800000002", "t1", "+8613800000001", 9]}, {"e": to_wire(decode_obj(CALL))}])
    events = _in_arrival_order([packed], on_feedback=seen.append)
    assert [e.event_id for e, _ in events] == ["c1"] and [fb.flag_id for fb in seen] == ["t1"]


def test_feedback_from_an_older_worker_has_no_via_and_an_older_worker_reads_ours() -> None:
    seen: list[Feedback] = []
    new = Feedback("+8613800000002", "t2", "+8613800000001", 9, "B1")
    packed = orjson.dumps([{"f": ["+8613800000002", "t1", "+8613800000001", 9]}, new.to_envelope()])
    _in_arrival_order([packed], on_feedback=seen.append)
    assert seen == [Feedback("+8613800000002", "t1", "+8613800000001", 9), new]
    assert seen[0].via == ""
    # What an older worker does with our record: it unpacks exactly four values from "f" and ignores "v".
    key, flag_id, who, eff = orjson.loads(orjson.dumps(new.to_envelope()))["f"]
    assert (key, flag_id, who, eff) == ("+8613800000002", "t2", "+8613800000001", 9)
    # A feedback without a link keeps the old record byte for byte.
    assert orjson.dumps(Feedback("k", "t", "w", 1).to_envelope()) == orjson.dumps({"f": ["k", "t", "w", 1]})


def test_a_longer_feedback_list_from_a_newer_worker_still_reads() -> None:
    assert Feedback.from_list(["k", "t", "w", 1, "later"]) == Feedback("k", "t", "w", 1)
