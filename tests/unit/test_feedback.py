"""The feedback edge (callee paid -> caller state, payer flagged -> payee state) and payee-side features."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable

import numpy as np
import orjson
import pytest

from core.events import CallEvent, Event, TransferEvent
from features.clock import DAY_MS, HOUR_MS, MINUTE_MS
from features.pipeline import FeatureEngine, in_arrival_order
from features.registry import BLOCK_NAMES
from features.state import (
    FEEDBACK_DELAY_MS,
    PAYEE_AGE_CAP_S,
    PAYEE_PREFIX,
    CallerSnapshot,
    CallerState,
    Feedback,
    PayeeSnapshot,
    PayeeState,
    SubscriberState,
    payee_key,
    state_from_obj,
)
from features.vector import (
    FEATURE_INDEX,
    FEATURE_NAMES,
    FeatureRow,
    apply_feedback,
    available_at,
    caller_step,
    payee_step,
    subscriber_step,
    transfer_feedback,
)
from models.explain import reasons

pytestmark = pytest.mark.unit

T0 = 1_767_254_400_000  # 2026-01-01T08:00Z, 16:00 local
RING = "+8617011112222"
VICTIMS = [f"+861390000{i:04d}" for i in range(6)]
MULE = "ACC-MULE-1"


def call(eid: str, ts: int, callee: str, dur: float, caller: str = RING, kind: str = "virtual") -> CallEvent:
    return CallEvent(eid, ts, caller, callee, dur > 0, dur, kind)


def pay(eid: str, ts: int, sub: str, payee: str, amount: float = 5000.0) -> TransferEvent:
    return TransferEvent(eid, ts, sub, f"PAYER-{sub}", payee, amount, "CNY", "mobile_app")


def value(row: FeatureRow | None, name: str) -> float:
    assert row is not None
    return row.values[FEATURE_INDEX[name]]


def rows_by_id(events: Iterable[Event]) -> dict[str, FeatureRow]:
    return {r.event_id: r for r in FeatureEngine().run(events)}


# -- caller side: callees who later paid -----------------------------------------------------------------


def test_caller_learns_callees_who_paid_a_new_payee_after_its_call() -> None:
    ends = T0 + 10 * MINUTE_MS  # the call ends
    paid = ends + 20 * MINUTE_MS
    events = [
        call("c-a", T0, VICTIMS[0], 600),
        pay("t-a", paid, VICTIMS[0], MULE),
        call("c-b", paid + 5 * MINUTE_MS, VICTIMS[1], 30),  # before the feedback counts
        call("c-c", paid + FEEDBACK_DELAY_MS + MINUTE_MS, VICTIMS[2], 30),  # after
        call("c-d", paid + DAY_MS + HOUR_MS, VICTIMS[3], 30),  # a day later: out of 24 h, still in 7 d
    ]
    rows = rows_by_id(events)
    assert value(rows["c-a"], "caller_paid_callees_7d") == 0
    assert value(rows["c-b"], "caller_paid_callees_24h") == 0
    assert value(rows["c-c"], "caller_paid_callees_24h") == 1
    assert value(rows["c-c"], "caller_paid_callees_7d") == 1
    assert value(rows["c-c"], "caller_paid_share_7d") == pytest.approx(1 / 3)  # 3 callees in 7 d, 1 paid
    assert value(rows["c-d"], "caller_paid_callees_24h") == 0
    assert value(rows["c-d"], "caller_paid_callees_7d") == 1
    # The payment is not fed back to the victim's own later rows as caller risk of some other number.
    assert math.isnan(value(rows["t-a"], "caller_paid_callees_7d"))


def test_suspicious_contact_carries_the_callers_paid_count_to_transfer_rows() -> None:
    paid = T0 + 30 * MINUTE_MS
    events = [
        call("c-a", T0, VICTIMS[0], 900, kind="overseas"),
        pay("t-a", paid, VICTIMS[0], MULE),
        call("c-b", paid + 2 * HOUR_MS, VICTIMS[1], 1200, kind="overseas"),  # suspicious: long, stranger
        pay("t-b", paid + 2 * HOUR_MS + 30 * MINUTE_MS, VICTIMS[1], "ACC-MULE-2"),
    ]
    rows = rows_by_id(events)
    assert value(rows["t-a"], "suspicious_caller_paid_callees_7d") == 0
    assert value(rows["t-b"], "suspicious_caller_paid_callees_7d") == 1


@pytest.mark.parametrize(
    "case",
    ["known_payee", "short_talk", "call_too_long_ago", "not_a_stranger", "unanswered"],
)
def test_no_caller_feedback_without_the_story(case: str) -> None:
    victim = VICTIMS[0]
    events: list[Event] = []
    first_call = T0 + 2 * DAY_MS
    payee = MULE
    if case == "known_payee":
        events.append(pay("t-old", T0, victim, MULE, 50.0))  # paid two days earlier: not new
    if case == "not_a_stranger":
        events.append(call("c-old", T0, victim, 120))  # first seen two days before the call that matters
    dur = {"short_talk": 40, "unanswered": 0}.get(case, 600)
    events.append(call("c-a", first_call, victim, dur))
    paid = first_call + dur * 1000 + 20 * MINUTE_MS
    if case == "call_too_long_ago":
        paid = first_call + DAY_MS + HOUR_MS
    events.append(pay("t-a", paid, victim, payee))
    engine = FeatureEngine()
    rows = {r.event_id: r for r in engine.run(events)}
    sub = engine.subscribers[victim]
    assert [fb for fb in transfer_feedback(sub, events[-1], rows["t-a"]) if not fb.key.startswith(PAYEE_PREFIX)] == []
    assert engine.callers[RING].paid.pending == []


def test_repeated_feedback_counts_once_even_across_a_snapshot() -> None:
    state = CallerState()
    assert caller_step(state, call("c-a", T0, VICTIMS[0], 600)) is not None
    fb = Feedback(RING, "t-a", VICTIMS[0], T0 + HOUR_MS)
    assert apply_feedback(state, fb)
    assert not apply_feedback(state, fb)
    restored = state_from_obj(orjson.loads(orjson.dumps(state.to_obj())))
    assert isinstance(restored, CallerState)
    assert not apply_feedback(restored, fb)  # a crash replay re-sends it after the state was written
    # Another transfer by the same callee is another flag id, but the same distinct callee.
    assert apply_feedback(restored, Feedback(RING, "t-a2", VICTIMS[0], T0 + HOUR_MS + MINUTE_MS))
    snap = caller_step(restored, call("c-b", T0 + 2 * HOUR_MS, VICTIMS[1], 30))
    assert snap is not None
    assert snap.paid_callees_24h == 1 and snap.paid_callees_7d == 1


def _ring_day() -> list[Event]:
    """A ring line working through many callees; some pay mules (a few twice), others hang up."""
    events: list[Event] = []
    for i in range(40):
        victim = f"+86139111{i:05d}"
        start = T0 + i * 7 * MINUTE_MS
        dur = 900 if i % 3 == 0 else 20
        events.append(call(f"c{i}", start, victim, dur))
        if i % 3 == 0:
            paid = start + dur * 1000 + (i % 5 + 1) * 2 * MINUTE_MS
            events.append(pay(f"t{i}", paid, victim, f"MULE-{i % 2}"))
            if i % 2 == 0:
                events.append(pay(f"t{i}b", paid + 3 * MINUTE_MS, victim, f"MULE-{i % 2}"))
    return in_arrival_order(events)


def _serving(events: list[Event], hop_events: int) -> tuple[list[FeatureRow], dict[str, CallerState | PayeeState]]:
    """The agents' order with the feedback hop: feedback is delivered ``hop_events`` events after its transfer."""
    keyed: dict[str, CallerState | PayeeState] = {}
    subs: dict[str, SubscriberState] = {}
    in_flight: list[tuple[int, Feedback]] = []
    rows: list[FeatureRow] = []
    for n, event in enumerate(events):
        for _due, fb in [f for f in in_flight if f[0] <= n]:
            apply_feedback(
                keyed.setdefault(fb.key, PayeeState() if fb.key.startswith(PAYEE_PREFIX) else CallerState()), fb
            )
        in_flight = [f for f in in_flight if f[0] > n]
        snap = payee_snap = None
        if isinstance(event, CallEvent):
            caller = keyed.setdefault(event.caller, CallerState())
            assert isinstance(caller, CallerState)
            snap = caller_step(caller, event)
        else:
            payee = keyed.setdefault(payee_key(event.payee_account), PayeeState())
            assert isinstance(payee, PayeeState)
            payee_snap = payee_step(payee, event)
        row = subscriber_step(subs.setdefault(event.subscriber, SubscriberState()), event, snap, payee_snap)
        assert row is not None
        rows.append(row)
        if isinstance(event, TransferEvent):
            in_flight += [(n + 1 + hop_events, fb) for fb in transfer_feedback(subs[event.subscriber], event, row)]
    for _, fb in in_flight:
        apply_feedback(keyed.setdefault(fb.key, CallerState()), fb)
    return rows, keyed


def test_feedback_hop_faster_than_the_delay_changes_no_row() -> None:
    events = _ring_day()
    offline = list(FeatureEngine().run(events))
    assert max(value(r, "caller_paid_callees_24h") for r in offline) >= 5
    # Events are minutes apart: a hop of up to 3 events is shorter than FEEDBACK_DELAY_MS of event time.
    for hop in (0, 1, 3):
        served, _ = _serving(events, hop)
        assert all(
            (a == b) or (math.isnan(a) and math.isnan(b))
            for x, y in zip(served, offline, strict=True)
            for a, b in zip(x.values, y.values, strict=True)
        ), hop


def test_feedback_hop_slower_than_the_delay_converges() -> None:
    events = _ring_day()
    engine = FeatureEngine()
    offline = list(engine.run(events))
    served, keyed = _serving(events, 40)  # hours of event time late: rows differ, the state catches up
    differ = [
        a.event_id
        for a, b in zip(served, offline, strict=True)
        if value(a, "caller_paid_callees_24h") != value(b, "caller_paid_callees_24h")
    ]
    assert differ  # the test would be empty otherwise
    probe = call("probe", available_at(events[-1]) + HOUR_MS, "+8613911199999", 30)
    late = keyed[RING]
    assert isinstance(late, CallerState)
    assert caller_step(late, probe) == caller_step(engine.callers[RING], probe)


def _two_callees_one_mule() -> list[Event]:
    """One line talks two victims into paying the same mule, a third into paying another; then rings on."""
    paid_a, paid_b = T0 + 30 * MINUTE_MS, T0 + 2 * HOUR_MS + 30 * MINUTE_MS
    return in_arrival_order(
        [
            call("c-a", T0, VICTIMS[0], 900),
            pay("t-a", paid_a, VICTIMS[0], MULE),
            call("c-b", T0 + 2 * HOUR_MS, VICTIMS[1], 900),
            pay("t-b", paid_b, VICTIMS[1], MULE),
            call("c-c", T0 + 3 * HOUR_MS, VICTIMS[2], 900),
            pay("t-c", T0 + 3 * HOUR_MS + 30 * MINUTE_MS, VICTIMS[2], "ACC-MULE-2"),
            call("c-d", paid_b + 5 * MINUTE_MS, VICTIMS[3], 30),  # t-b's feedback does not count yet
            call("c-e", paid_b + FEEDBACK_DELAY_MS + MINUTE_MS, VICTIMS[4], 30),  # it does now
            pay("t-e", paid_b + FEEDBACK_DELAY_MS + 20 * MINUTE_MS, VICTIMS[5], MULE, 80.0),  # a plain payer
            call("c-f", paid_b + 7 * DAY_MS + HOUR_MS, VICTIMS[5], 30),  # a week on: t-a has left the week
        ]
    )


def test_callees_of_one_line_who_paid_the_same_account_are_counted_at_its_next_call() -> None:
    rows = rows_by_id(_two_callees_one_mule())
    assert value(rows["c-b"], "caller_shared_payee_callees_7d") == 0  # one payer of the mule so far
    assert value(rows["c-d"], "caller_paid_callees_7d") == 1
    assert value(rows["c-d"], "caller_shared_payee_callees_7d") == 0
    assert value(rows["c-e"], "caller_paid_callees_7d") == 2
    assert value(rows["c-e"], "caller_shared_payee_callees_7d") == 2  # the third victim paid another account
    assert value(rows["c-f"], "caller_shared_payee_callees_7d") == 0
    assert math.isnan(value(rows["t-e"], "caller_shared_payee_callees_7d"))


def test_payers_talked_into_paying_by_the_same_stranger_are_counted_at_the_account() -> None:
    rows = rows_by_id(_two_callees_one_mule())
    assert value(rows["t-b"], "payee_flagged_payers_7d") == 1
    assert value(rows["t-b"], "payee_shared_caller_payers_7d") == 0
    assert value(rows["t-e"], "payee_flagged_payers_7d") == 2
    assert value(rows["t-e"], "payee_shared_caller_payers_7d") == 2
    assert value(rows["t-c"], "payee_shared_caller_payers_7d") == 0  # the other account had one payer


def test_feedback_names_what_links_the_two_keys() -> None:
    engine = FeatureEngine()
    events = _two_callees_one_mule()
    for event in events:
        row = engine.process(event)
        if event.event_id == "t-a":
            assert row is not None and isinstance(event, TransferEvent)
            feedback = transfer_feedback(engine.subscribers[VICTIMS[0]], event, row)
            break
    assert sorted((fb.key, fb.via) for fb in feedback) == [(RING, MULE), (payee_key(MULE), RING)]


def test_shared_counts_need_the_same_account_and_the_same_caller() -> None:
    state = CallerState()
    caller_step(state, call("c0", T0, VICTIMS[0], 600))
    for i, via in enumerate(["A", "B", "A", "C", "B"]):
        apply_feedback(state, Feedback(RING, f"t{i}", VICTIMS[i % 4], T0 + MINUTE_MS, via))
    apply_feedback(state, Feedback(RING, "old", VICTIMS[5], T0 + MINUTE_MS))  # an older worker's: no via
    snap = caller_step(state, call("c1", T0 + HOUR_MS, VICTIMS[5], 30))
    assert snap is not None
    # A: victims 0 and 2; B: victims 1 and 0; C: victim 3 alone.
    assert snap.paid_callees_7d == 5 and snap.shared_payee_callees_7d == 3


@pytest.mark.parametrize("hop", [0, 1, 3])
def test_shared_features_are_the_same_through_the_feedback_hop(hop: int) -> None:
    # Other traffic every 5 min, so that a hop of a few events is shorter than FEEDBACK_DELAY_MS of event time.
    chatter = [
        call(f"x{i}", T0 - MINUTE_MS + i * 5 * MINUTE_MS, VICTIMS[i % 2], 60, caller="+8613700000000")
        for i in range(80)
    ]
    events = in_arrival_order([*_two_callees_one_mule(), *chatter])
    offline = list(FeatureEngine().run(events))
    assert max(value(r, "caller_shared_payee_callees_7d") for r in offline if r.is_call) == 2
    served, _ = _serving(events, hop)
    assert [r.event_id for r in served] == [r.event_id for r in offline]
    for got, want in zip(served, offline, strict=True):
        assert all(a == b or (math.isnan(a) and math.isnan(b)) for a, b in zip(got.values, want.values, strict=True))


def test_shared_flags_survive_a_snapshot_and_older_states_read_empty() -> None:
    engine = FeatureEngine()
    list(engine.run(_two_callees_one_mule()))
    caller, payee = engine.callers[RING], engine.payees[MULE]
    for state in (caller, payee):
        back = state_from_obj(orjson.loads(orjson.dumps(state.to_obj())))
        assert back.to_obj() == state.to_obj() and back.snapshot() == state.snapshot()
        old = state.to_obj()
        del old["v"]  # stored by a worker before the pairs existed
        older = state_from_obj(old)
        assert older.snapshot() == _with_shared(state.snapshot(), 0)


def _with_shared(snap: CallerSnapshot | PayeeSnapshot, n: int) -> CallerSnapshot | PayeeSnapshot:
    """The snapshot with its new shared count set to ``n``."""
    if isinstance(snap, CallerSnapshot):
        return dataclasses.replace(snap, shared_payee_callees_7d=n)
    return dataclasses.replace(snap, shared_caller_payers_7d=n)


def test_snapshots_from_an_older_worker_read_with_the_shared_counts_at_zero() -> None:
    engine = FeatureEngine()
    list(engine.run(_two_callees_one_mule()))
    for state in (engine.callers[RING], engine.payees[MULE]):
        snap = _with_shared(state.snapshot(), 2)
        wire = snap.to_list()
        assert type(snap).from_list(wire) == snap
        # Up to the field before the shared count, as a worker before it sends (the caller's ``reported`` came later).
        shared = "shared_payee_callees_7d" if isinstance(snap, CallerSnapshot) else "shared_caller_payers_7d"
        older = type(snap).from_list(wire[: [f.name for f in dataclasses.fields(snap)].index(shared)])
        assert older == _with_shared(snap, 0)


# -- payee side ----------------------------------------------------------------------------------------


def test_payee_fan_in_counts_distinct_and_new_payers_in_exact_windows() -> None:
    shop = "ACC-SHOP"
    regular = VICTIMS[:3]
    events: list[Event] = [pay(f"old{i}", T0 + i * MINUTE_MS, s, shop, 100.0) for i, s in enumerate(regular)]
    later = T0 + 2 * DAY_MS
    events += [pay(f"reg{i}", later + i * MINUTE_MS, s, shop, 100.0) for i, s in enumerate(regular)]
    events += [pay("new1", later + 10 * MINUTE_MS, VICTIMS[4], shop, 300.0)]
    events += [pay("new1b", later + 12 * MINUTE_MS, VICTIMS[4], shop, 300.0)]  # same payer again
    events += [pay("probe", later + 20 * MINUTE_MS, VICTIMS[5], shop, 1.0)]
    events += [pay("after", later + 20 * MINUTE_MS + DAY_MS, VICTIMS[5], shop, 1.0)]
    rows = rows_by_id(events)
    probe = rows["probe"]
    assert value(probe, "payee_payers_24h") == 5  # three regulars, two newcomers
    assert value(probe, "payee_payers_7d") == 5
    assert value(probe, "payee_new_payers_24h") == 2  # the regulars first paid two days ago
    assert value(probe, "payee_amount_24h") == pytest.approx(300 + 600 + 1)
    assert value(probe, "payee_age_s") == pytest.approx((later + 20 * MINUTE_MS - T0) / 1000)
    after = rows["after"]
    assert value(after, "payee_payers_24h") == 1  # everyone else left the 24 h window
    assert value(after, "payee_payers_7d") == 5
    assert value(after, "payee_new_payers_24h") == 0  # VICTIMS[5] first paid exactly a day ago: no longer new
    assert value(after, "payee_age_s") == PAYEE_AGE_CAP_S
    # A call row has no payee.
    assert math.isnan(value(next(iter(rows_by_id([call("c", T0, VICTIMS[0], 60)]).values())), "payee_payers_24h"))


def test_payee_learns_payers_who_paid_right_after_a_suspicious_call() -> None:
    events: list[Event] = []
    for i, victim in enumerate(VICTIMS[:3]):
        start = T0 + i * 3 * HOUR_MS
        events.append(call(f"c{i}", start, victim, 1500, kind="overseas"))
        events.append(pay(f"t{i}", start + 1500_000 + 10 * MINUTE_MS, victim, MULE))
    # An ordinary payer with no call: not flagged.
    events.append(pay("plain", T0 + 5 * HOUR_MS, VICTIMS[4], MULE, 80.0))
    rows = rows_by_id(events)
    assert value(rows["t0"], "payee_flagged_payers_7d") == 0
    assert value(rows["t1"], "payee_flagged_payers_7d") == 1  # t0's flag counts 30 min after t0
    assert value(rows["plain"], "payee_flagged_payers_7d") == 2
    assert value(rows["plain"], "payee_flagged_share_7d") == pytest.approx(2 / 3)
    assert value(rows["t2"], "payee_flagged_payers_7d") == 2
    assert value(rows["t2"], "payee_payers_7d") == 4


def test_duplicate_transfer_is_dropped_at_the_payee_and_changes_nothing() -> None:
    state = PayeeState()
    first = pay("t1", T0, VICTIMS[0], MULE)
    assert payee_step(state, first) is not None
    before = orjson.dumps(state.to_obj())
    assert payee_step(state, first) is None
    assert orjson.dumps(state.to_obj()) == before
    engine = FeatureEngine()
    assert engine.process(first) is not None
    assert engine.process(first) is None


def test_caller_table_values_round_trip_by_kind() -> None:
    payee = PayeeState()
    payee_step(payee, pay("t1", T0, VICTIMS[0], MULE))
    payee.feedback(Feedback(payee_key(MULE), "t1", VICTIMS[0], T0 + FEEDBACK_DELAY_MS))
    restored = state_from_obj(orjson.loads(orjson.dumps(payee.to_obj())))
    assert isinstance(restored, PayeeState)
    assert restored.to_obj() == payee.to_obj()
    assert restored.snapshot() == payee.snapshot()
    caller = CallerState()
    caller_step(caller, call("c1", T0, VICTIMS[0], 60))
    back = state_from_obj(orjson.loads(orjson.dumps(caller.to_obj())))
    assert isinstance(back, CallerState) and back.snapshot() == caller.snapshot()
    # A caller state written before the feedback edge existed still loads.
    old = caller.to_obj()
    del old["q"]
    assert isinstance(state_from_obj(old), CallerState)


# -- explanations -------------------------------------------------------------------------------------------


_FEEDBACK_CALLER_FEATURES = [
    "caller_paid_callees_24h",
    "caller_paid_callees_7d",
    "caller_paid_share_7d",
    "caller_shared_payee_callees_7d",
]
_WEEK_CALLER_FEATURES = [
    "caller_calls_7d",
    "caller_short_ratio_7d",
    "caller_answered_short_share_7d",
    "caller_answered_short_share_24h",
    "call_vs_caller_usual_talk",
]


@pytest.mark.parametrize(
    "name",
    [*BLOCK_NAMES["payee"], *_FEEDBACK_CALLER_FEATURES, *_WEEK_CALLER_FEATURES, "suspicious_caller_paid_callees_7d"],
)
def test_new_features_read_as_sentences_with_their_values(name: str) -> None:
    row = [0.0] * len(FEATURE_NAMES)
    fraction = name.endswith(("share_7d", "ratio_7d", "share_24h"))
    row[FEATURE_INDEX[name]] = 0.25 if fraction else 7 * 3600.0 if name == "payee_age_s" else 7.0
    contrib = np.zeros(len(FEATURE_NAMES))
    contrib[FEATURE_INDEX[name]] = 1.0
    (sentence,) = reasons(row, contrib)
    assert not sentence.startswith("unusual"), sentence  # a written sentence, not the generic fallback
    assert ("25%" if fraction else "7") in sentence, sentence


def test_payee_age_sentence_says_at_least_at_the_cap() -> None:
    row = [0.0] * len(FEATURE_NAMES)
    contrib = np.zeros(len(FEATURE_NAMES))
    contrib[FEATURE_INDEX["payee_age_s"]] = 1.0
    row[FEATURE_INDEX["payee_age_s"]] = 2 * HOUR_MS / 1000
    assert reasons(row, contrib) == ["the receiving account first appeared 2 h ago"]
    row[FEATURE_INDEX["payee_age_s"]] = PAYEE_AGE_CAP_S
    assert reasons(row, contrib) == ["the receiving account first appeared at least 3 days ago"]
