"""Police reports (``case.v1`` with ``reported_ms``): validation, the fan-out to the numbers they name, and what
calls and transfers of those numbers then carry, offline as on the stream's hop."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from core.decode import decode_obj
from core.errors import InvalidEvent
from core.events import CallEvent, CallStartEvent, Event, ReportEvent, TransferEvent
from features.clock import DAY_MS, MINUTE_MS
from features.params import FEEDBACK_DELAY_MS, REPORT_KEEP_MS
from features.pipeline import FeatureEngine
from features.state import CallerState, Feedback
from features.vector import FEATURE_INDEX
from models import report_events
from streams.ingest import Fanout, route_raw

pytestmark = pytest.mark.unit

T0 = 1_767_254_400_000
RING = "+85261234567"
RING_2 = "+8617000000002"
VICTIM = "+8613900000001"
NEXT = "+8613900000002"
REPORTED_AT = T0 + DAY_MS


def report_obj(**over: Any) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "schema": "case.v1",
        "case_id": "case-1",
        "scenario": "police_impersonation",
        "victim": VICTIM,
        "fraud_numbers": [RING, RING_2, RING],
        "first_contact_ms": T0,
        "first_loss_ms": T0 + 40 * MINUTE_MS,
        "event_ids": ["c-1", "t-1"],
        "reported_ms": REPORTED_AT,
    }
    obj.update(over)
    return obj


def ring_call(eid: str, ts: int, callee: str, dur: float = 900.0) -> CallEvent:
    return CallEvent(eid, ts, RING, callee, True, dur, "mobile")


def row_of(events: list[Event], event_id: str) -> dict[str, float]:
    rows = {row.event_id: row for row in FeatureEngine().run(events)}
    return {name: rows[event_id].values[i] for name, i in FEATURE_INDEX.items()}


def test_a_report_decodes_with_its_numbers_once_each_and_its_report_time() -> None:
    event = decode_obj(report_obj())
    assert isinstance(event, ReportEvent)
    assert (event.event_id, event.subscriber, event.available_ms) == ("report:case-1", VICTIM, REPORTED_AT)
    assert event.fraud_numbers == (RING, RING_2)


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"reported_ms": None}, "missing_field"),  # the contract's case.v1 alone does not say when it was made
        ({"reported_ms": "tuesday"}, "wrong_type"),
        ({"fraud_numbers": "+85261234567"}, "wrong_type"),
        ({"fraud_numbers": ["12345"]}, "bad_phone"),
        ({"fraud_numbers": [RING] * 65}, "bad_value"),
        ({"victim": "me"}, "bad_phone"),
    ],
)
def test_a_malformed_report_is_rejected_with_its_reason(change: dict[str, Any], reason: str) -> None:
    with pytest.raises(InvalidEvent) as info:
        decode_obj(report_obj(**change))
    assert info.value.reason == reason


def test_ingest_sends_one_report_feedback_per_number_keyed_by_it() -> None:
    routed = route_raw(orjson.dumps(report_obj()), 65_536, None)
    assert isinstance(routed, Fanout)
    assert [key for key, _ in routed.messages] == [RING.encode(), RING_2.encode()]
    for key, value in routed.messages:
        fb = Feedback.from_envelope(orjson.loads(value))
        assert (fb.key, fb.reported, fb.effective_ms) == (key.decode(), True, REPORTED_AT + FEEDBACK_DELAY_MS)


def test_a_reported_number_is_reported_from_the_hop_delay_on_and_a_repeat_is_no_news() -> None:
    state = CallerState()
    fb = Feedback(RING, "report:case-1", VICTIM, REPORTED_AT, reported=True)
    assert state.feedback(fb)
    assert not state.feedback(fb)  # the same report again
    assert state.feedback(Feedback(RING, "report:case-0", VICTIM, REPORTED_AT - 1, reported=True))  # an earlier one
    assert not state.reported_at(REPORTED_AT - 2) and state.reported_at(REPORTED_AT)
    assert state.reported_at(REPORTED_AT - 1 + REPORT_KEEP_MS) and not state.reported_at(REPORTED_AT + REPORT_KEEP_MS)
    restored = CallerState.from_obj(orjson.loads(orjson.dumps(state.to_obj())))
    assert restored.reported == [REPORTED_AT - 1, REPORTED_AT]
    # A silent reported line is kept while its report counts, not only for its call windows.
    assert not state.idle(REPORTED_AT + 30 * DAY_MS)
    # Reported again after its report lapsed: it counts again, from the earliest report to the latest's keep.
    again = REPORTED_AT + 2 * REPORT_KEEP_MS
    assert state.feedback(Feedback(RING, "report:case-9", NEXT, again, reported=True))
    assert state.reported_at(again + DAY_MS) and state.reported == [REPORTED_AT - 1, again]


def test_calls_and_transfers_after_a_report_carry_it_and_those_before_do_not() -> None:
    (report,) = report_events([report_obj(reported_ms=None)], delay_ms=DAY_MS)  # made a day after the loss
    assert report.ts_ms == T0 + 40 * MINUTE_MS + DAY_MS
    effective = report.ts_ms + FEEDBACK_DELAY_MS
    events: list[Event] = [
        ring_call("c-1", T0, VICTIM),
        report,
        ring_call("c-early", effective - 20 * MINUTE_MS, NEXT, 30.0),  # a short call, before the hop delay
        CallStartEvent("s-2", "c-2", effective + MINUTE_MS, RING, NEXT, "mobile"),
        ring_call("c-2", effective + MINUTE_MS, NEXT, 900.0),
        TransferEvent("t-2", effective + 30 * MINUTE_MS, NEXT, "PAYER-2", "ACC-MULE", 9000.0, "CNY", "mobile_app"),
    ]
    for row_id in ("c-1", "c-early"):
        assert row_of(events, row_id)["caller_reported"] == 0.0
    start_row = row_of(events, "s-2")
    assert start_row["caller_reported"] == 1.0 and start_row["oncall_reported"] == 1.0
    assert row_of(events, "c-2")["caller_reported"] == 1.0
    paid = row_of(events, "t-2")
    assert paid["suspicious_caller_reported"] == 1.0 and paid["transfer_after_suspicious_call"] == 1.0
    # The same stream without the report: nothing is reported.
    without = [e for e in events if not isinstance(e, ReportEvent)]
    assert row_of(without, "c-2")["caller_reported"] == 0.0
    assert row_of(without, "t-2")["suspicious_caller_reported"] == 0.0


def test_a_report_makes_no_row_and_moves_no_timer() -> None:
    engine = FeatureEngine()
    assert engine.step(decode_obj(report_obj())) == []
    assert engine.watermark_ms == 0
    assert engine.callers[RING].reported == [REPORTED_AT + FEEDBACK_DELAY_MS] * 2
    assert not engine.subscribers  # the victim gets no state from a report
