"""Timers in event time: open calls re-scored at CALL_TICK_MARKS_S, the same offline and per partition."""

from __future__ import annotations

import asyncio
import math
import random
from types import SimpleNamespace
from typing import Any

import numpy as np
import orjson
import pytest

from core.decode import decode_obj
from core.events import CallEvent, CallStartEvent, Event, TransferEvent
from core.kinds import to_wire
from core.settings import Settings
from features.clock import MINUTE_MS
from features.params import CALL_TICK_MARKS_S
from features.pipeline import FeatureEngine, in_arrival_order
from features.state import SubscriberState
from features.steps import key_of, key_stage, key_state_type
from features.timers import TICK_SCHEMA, TickIndex, due_ticks, tick_call_id, tick_id
from features.vector import FEATURE_INDEX, FeatureRow
from models.dataset import build_dataset
from sandbox.simulate import CityConfig, simulate
from streams import codecs
from streams.agents import Agents
from streams.produce import partition_of
from streams.state_table import StateTable

pytestmark = pytest.mark.unit

T0 = 1_767_254_400_000
SUB = "+8613900000000"
RING = "+85261234567"


def start(eid: str, call_id: str, ts: int, sub: str = SUB) -> CallStartEvent:
    return CallStartEvent(eid, call_id, ts, RING, sub, "mobile", callee_lat=31.2, callee_lon=121.5)


def end(eid: str, ts: int, dur: float) -> CallEvent:
    return CallEvent(eid, ts, RING, SUB, True, dur, "mobile")


def pay(eid: str, ts: int) -> TransferEvent:
    return TransferEvent(eid, ts, SUB, "6222000011112222", "ACC-MULE-1", 50_000.0, "CNY", "mobile_app")


def value(row: FeatureRow, name: str) -> float:
    return row.values[FEATURE_INDEX[name]]


def ticks(rows: list[FeatureRow]) -> list[FeatureRow]:
    return [r for r in rows if r.schema == TICK_SCHEMA]


# -- offline ---------------------------------------------------------------------------------------------


def test_a_long_open_call_is_re_scored_at_each_mark_in_event_time() -> None:
    events = [start("s-1", "c-1", T0), pay("t-1", T0 + 25 * MINUTE_MS), pay("t-2", T0 + 60 * MINUTE_MS)]
    rows = list(FeatureEngine().run(events))
    assert [r.event_id for r in rows] == ["s-1", *(f"c-1+{m}s" for m in CALL_TICK_MARKS_S), "t-1", "t-2"]
    for row, mark in zip(ticks(rows), CALL_TICK_MARKS_S, strict=True):
        assert row.avail_ms == T0 + mark * 1000 and row.subscriber == SUB and row.is_call
        assert (row.lat, row.lon) == (31.2, 121.5)
        assert value(row, "is_call_start") == 0 and value(row, "oncall_calls") == 1
        assert value(row, "oncall_stranger") == 1 and value(row, "oncall_elapsed_s") == mark
        assert math.isnan(value(row, "call_duration_s")) and value(row, "caller_is_stranger") == 1
        assert tick_call_id(row.event_id) == "c-1"


def test_no_tick_fires_after_its_call_ended_and_none_without_a_later_event() -> None:
    # The record (ends at 12 min) closes the call: the 20 min mark never fires.
    rows = list(FeatureEngine().run([start("s-1", "c-1", T0), end("c-1", T0, 720), pay("t-1", T0 + HOUR)]))
    assert [r.event_id for r in ticks(rows)] == ["c-1+300s", "c-1+600s"]
    # Event time, not wall time: nothing after the stream's last event fires.
    assert ticks(list(FeatureEngine().run([start("s-1", "c-1", T0)]))) == []


HOUR = 60 * MINUTE_MS


def test_a_tick_fires_before_an_event_at_its_due_time_and_process_fires_none() -> None:
    engine = FeatureEngine()
    engine.step(start("s-1", "c-1", T0))
    assert [r.event_id for r in engine.step(pay("t-1", T0 + 5 * MINUTE_MS))] == ["c-1+300s", "t-1"]
    assert engine.process(pay("t-2", T0 + 30 * MINUTE_MS)) is not None  # one event, no timers
    assert [r.event_id for r in engine.fire_ticks(T0 + 30 * MINUTE_MS)] == ["c-1+600s", "c-1+1200s"]


def test_fired_marks_survive_the_state_round_trip_and_an_older_state_reads() -> None:
    engine = FeatureEngine()
    list(engine.run([start("s-1", "c-1", T0), pay("t-1", T0 + 7 * MINUTE_MS)]))
    state = engine.subscribers[SUB]
    assert state.open_calls["c-1"].ticks == 1
    back = SubscriberState.from_obj(orjson.loads(orjson.dumps(state.to_obj())))
    assert back.open_calls == state.open_calls
    older = state.to_obj()
    older["o"] = {key: values[:7] for key, values in older["o"].items()}  # as stored before timers
    old = SubscriberState.from_obj(older).open_calls["c-1"]
    assert (old.ticks, old.lat, old.start_ms) == (0, None, T0)
    # A restart: a new index rebuilt from the stored state fires only the marks not fired yet.
    index = TickIndex()
    index.rebuild([(SUB, back)])
    assert due_ticks(back, T0 + HOUR) == [(T0 + 600_000, "c-1", 1), (T0 + 1_200_000, "c-1", 2)]
    fired = index.fire_due(T0 + HOUR, {SUB: back}.get)
    assert [row.event_id for row, _ in fired] == [tick_id("c-1", 1), tick_id("c-1", 2)]
    assert index.fire_due(T0 + 2 * HOUR, {SUB: back}.get) == [] and back.open_calls["c-1"].ticks == 3


def test_ticks_are_labelled_by_their_call() -> None:
    events = [start("s-1", "c-1", T0), end("c-1", T0, 900), start("s-2", "c-2", T0 + HOUR, sub="+8613900000001")]
    events.append(pay("t-1", T0 + 2 * HOUR))
    data = build_dataset(events, [{"event_ids": ["s-1", "c-1"]}])
    labels = {r.event_id: int(y) for r, y in zip(data.rows, data.y, strict=True)}
    assert labels == {
        "s-1": 1,
        "c-1+300s": 1,
        "c-1+600s": 1,
        "c-1": 1,
        "s-2": 0,
        **dict.fromkeys(["c-2+300s", "c-2+600s", "c-2+1200s"], 0),
        "t-1": 0,
    }


# -- serving: the score agent, per partition -------------------------------------------------------------


class _Sender:
    def __init__(self) -> None:
        self.records: list[tuple[bytes, bytes]] = []

    async def send_many(self, records: list[tuple[bytes, bytes]]) -> list[Any]:
        self.records += records
        return []


class _FeatureTopic:
    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []

    async def send(self, key: bytes, value: bytes) -> asyncio.Future[None]:
        self.rows.append(orjson.loads(value))
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done


_SCORER = SimpleNamespace(
    version="t", thresholds=(2.0, 3.0, 4.0), hold_threshold=None, score=lambda rows: np.zeros(len(rows))
)
PARTITIONS = 4


def _agents(data: dict[str, bytes], features: _FeatureTopic, changelog: _Sender) -> Agents:
    settings = Settings(partitions=PARTITIONS, publish_features=True, budget_follow=False, tick_idle_s=1e-6)
    return Agents(
        settings=settings,
        live_model=SimpleNamespace(scorer=_SCORER),
        shadow_model=SimpleNamespace(scorer=None),
        caller_states=StateTable(SimpleNamespace(data={}), codecs.decode_key_state, _Sender()),
        subscriber_states=StateTable(
            SimpleNamespace(data=data),
            codecs.decode_subscriber_state,
            changelog,
        ),
        to_callers=_Sender(),
        to_subscribers=_Sender(),
        to_explain=_Sender(),
        send_dead_letter=None,
        feature_topic=features,
    )


def _subscriber_hop(events: list[Event]) -> dict[int, list[bytes]]:
    """What the callers agent sends the score agent: per subscriber partition, packed envelopes in order."""
    keyed: dict[str, Any] = {}
    out: dict[int, list[bytes]] = {p: [] for p in range(PARTITIONS)}
    for event in in_arrival_order(events):
        key = key_of(event)
        state = keyed.setdefault(key, key_state_type(key)())
        snap = key_stage(state, event)
        if snap is not None:
            envelope = {"e": to_wire(event), "s": snap.to_list()}
            out[partition_of(event.subscriber.encode(), list(range(PARTITIONS)))].append(orjson.dumps(envelope))
    return out


def _same(a: list[float | None], b: tuple[float, ...]) -> bool:
    return all((x is None and math.isnan(y)) or x == y for x, y in zip(a, b, strict=True))


async def test_per_partition_serving_computes_the_offline_rows_ticks_included_across_a_restart() -> None:
    city = simulate(CityConfig(subscribers=400, days=0.5, seed=21, signalling=1.0))
    events = [decode_obj(e) for e in city.events]
    feedback_free = [e for e in events if not isinstance(e, TransferEvent)]  # the score->callers hop is not run
    offline = {r.event_id: r for r in FeatureEngine().run(feedback_free)}
    assert sum(r.schema == TICK_SCHEMA for r in offline.values()) > 20
    # Partitions far apart in event time: each is taken whole, in batches, one after the other, with a restart
    # (states from the changelog records only, a new agent) halfway through.
    hop = _subscriber_hop(feedback_free)
    rng = random.Random(3)
    features, changelog = _FeatureTopic(), _Sender()
    agents = _agents({}, features, changelog)
    restarted = False
    for p in rng.sample(range(PARTITIONS), PARTITIONS):
        records = hop[p]
        i = 0
        while i < len(records):
            n = rng.randint(1, 40)
            await agents._score_batch([b"[" + b",".join(records[i : i + n]) + b"]"])
            i += n
            if p == 2 and not restarted and i >= len(records) // 2 and changelog.records:
                restarted = True
                stored = {k.decode(): v for k, v in changelog.records}  # as Faust recovers them: the bytes
                agents = _agents(stored, features, changelog)  # a restarted worker: empty timers, the table
    assert restarted
    # The ticks due after a partition's own last event: fired by the idle timer at the worker's newest time.
    await agents.fire_idle_ticks(range(PARTITIONS))
    served = [row["event_id"] for row in features.rows]
    assert len(served) == len(set(served)), "a tick fired twice"
    assert set(served) == set(offline)
    for row in features.rows:
        want = offline[row["event_id"]]
        assert row["avail_ms"] == want.avail_ms and _same(row["values"], want.values), row["event_id"]


def _records_in_order(events: list[Event]) -> list[bytes]:
    """The score agent's envelopes of ``events`` in exactly this (arrival) order."""
    keyed: dict[str, Any] = {}
    out = []
    for event in events:
        key = key_of(event)
        snap = key_stage(keyed.setdefault(key, key_state_type(key)()), event)
        assert snap is not None
        out.append(orjson.dumps({"e": to_wire(event), "s": snap.to_list()}))
    return out


async def test_a_call_whose_record_is_still_on_the_wire_is_not_ticked_by_other_kinds() -> None:
    parts = list(range(PARTITIONS))
    victim = "+8613800000001"
    home = partition_of(victim.encode(), parts)
    neighbour = next(n for i in range(2, 200) if partition_of((n := f"+86138000{i:05d}").encode(), parts) == home)
    t0 = 1_700_000_000_000
    start = CallStartEvent("s-1", "k-1", t0, "+85290000001", victim, "mobile")
    # A neighbour's transfer 10 min on, read before the victim's 3-minute call record (a faster topic).
    transfer = TransferEvent("t-1", t0 + 10 * MINUTE_MS, neighbour, "A1", "B1", 50.0, "CNY", "mobile_app")
    record = CallEvent("c-1", t0, "+85290000001", victim, True, 180.0, "mobile", call_id="k-1")
    later = CallEvent("c-2", t0 + 30 * MINUTE_MS, "+85290000002", neighbour, True, 30.0, "mobile")
    features = _FeatureTopic()
    agents = _agents({}, features, _Sender())
    for raw in _records_in_order([start, transfer, record, later]):
        await agents._score_batch([b"[" + raw + b"]"])
    assert [r["event_id"] for r in features.rows] == ["s-1", "t-1", "c-1", "c-2"]  # no tick: the call had ended

    # A call that is still on the line is ticked once the call records pass its marks.
    start2 = CallStartEvent("s-2", "k-2", t0 + 40 * MINUTE_MS, "+85290000003", victim, "mobile")
    then = CallEvent("c-3", t0 + 47 * MINUTE_MS, "+85290000004", neighbour, True, 30.0, "mobile")
    for raw in _records_in_order([start2, then]):
        await agents._score_batch([b"[" + raw + b"]"])
    assert [r["event_id"] for r in features.rows][4:] == ["s-2", tick_id("k-2", 0), "c-3"]
