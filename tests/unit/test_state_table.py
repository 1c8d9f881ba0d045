"""Feature states at rest as bytes: the header, old records, the decoded cache's coherence and the idle sweep."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest

from core.decode import decode_obj
from features.pipeline import FeatureEngine, in_arrival_order
from features.state import NEVER, WINDOW_SPANS_MS
from sandbox.simulate import CityConfig, simulate
from streams import codecs
from streams.metrics import STATE_WRITE_WAIT
from streams.state_table import StateTable

pytestmark = pytest.mark.unit


class _Table:
    """What StateTable uses of a Faust table: its store and ``del`` (which sends a tombstone)."""

    name = "t"

    def __init__(self) -> None:
        self.data: dict[str, bytes] = {}
        self.tombstones: list[str] = []

    def __delitem__(self, key: str) -> None:
        del self.data[key]
        self.tombstones.append(key)


class _Sender:
    def __init__(self) -> None:
        self.records: list[tuple[bytes, bytes]] = []

    async def send_many(self, records: list[tuple[bytes, bytes]]) -> list[Any]:
        self.records += records
        return []


@pytest.fixture(scope="module")
def engine() -> FeatureEngine:
    city = simulate(CityConfig(subscribers=300, days=1.0, seed=41, signalling=1.0))
    events = in_arrival_order(decode_obj(e) for e in city.events)
    engine = FeatureEngine()
    for n, event in enumerate(events):
        engine.step(event)
        if n > len(events) // 2 and sum(bool(s.open_calls) for s in engine.subscribers.values()) >= 3:
            return engine  # stopped mid-stream: some people are on a call
    raise AssertionError("nobody was ever on a call")


def test_stored_bytes_round_trip_and_their_header_says_what_the_state_says(engine: FeatureEngine) -> None:
    open_seen = 0
    for state in engine.subscribers.values():
        raw = codecs.encode_state(state)
        assert codecs.decode_subscriber_state(raw).to_obj() == state.to_obj()
        assert codecs.idle_after_ms(raw, codecs.decode_subscriber_state) == state.idle_after_ms()
        assert codecs.has_open_calls(raw, codecs.decode_subscriber_state) == bool(state.open_calls)
        open_seen += bool(state.open_calls)
    for key, kstate in engine.key_states().items():
        raw = codecs.encode_state(kstate)
        assert codecs.decode_key_state(raw).to_obj() == kstate.to_obj(), key
        assert codecs.idle_after_ms(raw, codecs.decode_key_state) == kstate.idle_after_ms()
    assert open_seen, "the city should leave someone on a call"
    # A key with a pending flag never idles; the others idle once their longest window is empty.
    after = [s.idle_after_ms() for s in engine.key_states().values()]
    assert NEVER in after and any(a < NEVER for a in after)
    some = next(iter(engine.subscribers.values()))
    assert not some.idle(some.windows.now + WINDOW_SPANS_MS[-1]) and some.idle(
        some.windows.now + WINDOW_SPANS_MS[-1] + 1
    )


def test_records_written_before_the_header_are_still_read(engine: FeatureEngine) -> None:
    state = next(s for s in engine.subscribers.values() if s.open_calls)
    legacy = orjson.dumps(state.to_obj())  # what the Faust codec wrote
    assert codecs.decode_subscriber_state(legacy).to_obj() == state.to_obj()
    assert codecs.idle_after_ms(legacy, codecs.decode_subscriber_state) == state.idle_after_ms()
    assert codecs.has_open_calls(legacy, codecs.decode_subscriber_state)


async def test_the_cache_never_serves_a_state_the_store_no_longer_holds(engine: FeatureEngine) -> None:
    table, sender = _Table(), _Sender()
    states = StateTable(table, codecs.decode_subscriber_state, sender, cache_keys=3)  # type: ignore[arg-type]
    subs = list(engine.subscribers.items())[:10]
    await states.write(dict(subs))
    assert all(type(v) is bytes for v in table.data.values()) and len(sender.records) == 10
    key, state = subs[-1]
    assert states.stored(key) is state  # just written: cached as is
    assert states.stored(key) is states.stored(key)
    # A rebalance recovers another worker's newer record under the cache: the store's bytes win.
    other_key, other = subs[0]
    table.data[key] = codecs.encode_state(other)
    recovered = states.stored(key)
    assert recovered is not state and recovered.to_obj() == other.to_obj()
    # Bounded: only the most recently used stay decoded, the rest decode again from their bytes.
    assert len(states._cache) == 3
    assert states.stored(other_key).to_obj() == other.to_obj()
    assert states.current("nobody", {}, lambda: "new") == "new"
    assert states.current(key, {key: "touched"}, lambda: "new") == "touched"


async def test_the_idle_sweep_reads_headers_and_spares_keys_written_meanwhile(engine: FeatureEngine) -> None:
    table = _Table()
    states = StateTable(table, codecs.decode_key_state, _Sender(), cache_keys=100)  # type: ignore[arg-type]
    keyed = engine.key_states()
    await states.write(keyed)
    now = max(s.idle_after_ms() for s in keyed.values() if s.idle_after_ms() < NEVER) + 1
    want = {k for k, s in keyed.items() if s.idle(now)}
    assert want and len(want) < len(keyed)
    assert await states.expire_idle(now, chunk=7) == len(want)
    assert set(table.tombstones) == want and set(table.data) == set(keyed) - want
    assert all(k not in states._cache for k in want)
    assert await states.expire_idle(now) == 0


async def test_states_wait_for_their_messages_on_the_broker_and_the_wait_is_measured(engine: FeatureEngine) -> None:
    table, sender = _Table(), _Sender()
    table.name = "wait-test"  # type: ignore[misc]
    states = StateTable(table, codecs.decode_subscriber_state, sender)  # type: ignore[arg-type]
    waits = STATE_WRITE_WAIT.labels("wait-test")
    count_before, sum_before = _hist(waits)
    acked: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    key, state = next(iter(engine.subscribers.items()))
    writing = asyncio.ensure_future(states.write({key: state}, after=[acked]))
    await asyncio.sleep(0.05)
    assert not writing.done() and key not in table.data  # not before the broker has the events it accounts for
    acked.set_result(None)
    await writing
    assert key in table.data
    count_after, sum_after = _hist(waits)
    assert count_after == count_before + 1
    assert sum_after - sum_before >= 0.04


def _hist(child: Any) -> tuple[float, float]:
    samples = {s.name: s.value for metric in child.collect() for s in metric.samples}
    return samples["fw_state_write_wait_seconds_count"], samples["fw_state_write_wait_seconds_sum"]
