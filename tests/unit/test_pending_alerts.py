"""The score -> explain hand-off record: exact round trip (NaN features included) and a clear error."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from alerting import TransferRef
from core.errors import MalformedPendingAlert
from features.vector import FEATURE_NAMES, FeatureRow
from streams.pending_alerts import PendingAlert, decode_pending, encode_pending, holds_first

pytestmark = pytest.mark.unit

_value = st.one_of(st.just(math.nan), st.floats(allow_nan=False, allow_infinity=False))
_coord = st.one_of(st.none(), st.floats(-90, 90))


@given(
    values=st.lists(_value, min_size=len(FEATURE_NAMES), max_size=len(FEATURE_NAMES)),
    lat=_coord,
    lon=_coord,
    score=st.floats(0, 1),
    level=st.integers(1, 3),
    is_call=st.booleans(),
)
def test_round_trip_is_exact(
    values: list[float], lat: float | None, lon: float | None, score: float, level: int, is_call: bool
) -> None:
    row = FeatureRow("c-1-7", "+8613800001111", 1_700_000_000_000, is_call, tuple(values), lat, lon)
    alert = PendingAlert(row, score, level, "v20261123-000000-001", 1_700_000_001.25)
    back = decode_pending(encode_pending(alert))
    assert [math.isnan(v) for v in back.row.values] == [math.isnan(v) for v in values]
    assert [v for v in back.row.values if not math.isnan(v)] == [v for v in values if not math.isnan(v)]
    assert (back.row.event_id, back.row.subscriber, back.row.avail_ms, back.row.is_call) == (
        row.event_id,
        row.subscriber,
        row.avail_ms,
        row.is_call,
    )
    assert (back.row.lat, back.row.lon) == (lat, lon)
    assert (back.score, back.level, back.model_version, back.decided_at_s) == (
        score,
        level,
        alert.model_version,
        alert.decided_at_s,
    )


@pytest.mark.parametrize("raw", [b"not json", b"{}", b'{"e": "x"}', b"[1, 2]"])
def test_a_foreign_record_is_a_clear_error(raw: bytes) -> None:
    with pytest.raises(MalformedPendingAlert):
        decode_pending(raw)


def test_the_occasion_and_the_call_on_the_line_reach_the_decision() -> None:
    values = [0.0] * len(FEATURE_NAMES)
    values[FEATURE_NAMES.index("oncall_calls")] = 1.0
    row = FeatureRow("c-1-7", "+8613800001111", 1_700_000_000_000, True, tuple(values), None, None)
    back = decode_pending(encode_pending(PendingAlert(row, 0.5, 2, "v1", 1.0, None, "call-42", 0.4375)))
    decision = back.decision(("why",))
    assert (decision.occasion, decision.in_call, decision.threshold) == ("call-42", True, 0.4375)
    # A record from a worker before occasions: none, so the case acts once per level as before.
    quiet = PendingAlert(
        FeatureRow("t-1", "+86", 5, False, tuple([0.0] * len(FEATURE_NAMES)), None, None), 0.5, 1, "v1", 1.0
    )
    old = decode_pending(encode_pending(quiet))
    assert (old.occasion, old.decision().in_call, old.threshold) == (None, False, None)


def test_a_calls_connect_ticks_and_end_share_one_occasion() -> None:
    from core.events import CallEvent, CallStartEvent, TransferEvent, occasion_of
    from features.timers import tick_call_id, tick_id

    start = CallStartEvent("s-1", "k-9", 1000, "+852", "+86", "mobile")
    end = CallEvent("c-1", 1000, "+852", "+86", True, 600.0, "mobile", call_id="k-9")
    unjoined = CallEvent("c-2", 1000, "+852", "+86", True, 60.0, "mobile")
    transfer = TransferEvent("t-1", 5000, "+86", "A1", "B2", 100.0, "CNY", "mobile_app")
    assert occasion_of(start) == occasion_of(end) == "k-9"
    assert occasion_of(unjoined) == "c-2" and occasion_of(transfer) == "t-1"
    assert tick_call_id(tick_id("k-9", 1)) == "k-9"  # a timer's re-score of the call is the same occasion


@given(st.lists(st.tuples(st.sampled_from("abcd"), st.booleans()), max_size=30))
def test_holds_first_puts_held_subscribers_first_and_keeps_each_ones_order(batch: list[tuple[str, bool]]) -> None:
    values = tuple([0.0] * len(FEATURE_NAMES))
    alerts = [
        PendingAlert(
            FeatureRow(f"e-{i}", sub, 1_700_000_000_000 + i, False, values, None, None),
            0.9,
            1,
            "v1",
            1.0,
            TransferRef(f"e-{i}", 1_700_000_000_000 + i, "ACC-1", "ACC-2", 10.0, "CNY", None) if held else None,
        )
        for i, (sub, held) in enumerate(batch)
    ]
    groups = holds_first(alerts)
    order = [i for g in groups for i in g]
    assert sorted(order) == list(range(len(alerts)))  # every alert once
    assert all(groups)  # no empty group
    held = {sub for sub, h in batch if h}
    seen_unheld = False
    for i in order:
        seen_unheld |= batch[i][0] not in held
        assert not (seen_unheld and batch[i][0] in held)  # nobody with a hold waits behind one without
    for sub in {s for s, _ in batch}:
        mine = [i for i in order if batch[i][0] == sub]
        assert mine == sorted(mine)  # a subscriber's alerts stay in event order
