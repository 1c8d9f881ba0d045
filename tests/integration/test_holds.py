"""Payment holds against a real redis-server, a local stand-in for the bank's endpoint and a real broker."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import orjson
import pytest
import redis.asyncio as aioredis
from aiohttp import web
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from prometheus_client import REGISTRY

from alerting import keys
from alerting.audit import Actor
from alerting.console import write_demo_tokens
from alerting.decision import Decision, TransferRef
from alerting.dispatcher import Dispatcher
from alerting.holds import HoldDeliverer, HoldStore, hold_id_for
from alerting.lifecycle import TaskLifecycle
from alerting.service import start_console
from core.clock import SYSTEM_CLOCK, ManualClock
from core.settings import Settings
from sandbox.services import RunningService
from streams.topics import bootstrap, create_topics
from tests.contract import SCHEMAS

pytestmark = pytest.mark.integration

HOLD_SCHEMA = json.loads((SCHEMAS / "hold.v1.json").read_text())
HOME = (31.2304, 121.4737)
T0 = 1_700_000_000_000  # ManualClock's default start: event time and wall time agree in these tests
EXPIRY_S = 3600.0
DESK = Actor("desk-1", "dispatcher")


def _metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


class Bank:
    """A local stand-in for the payer's bank: records every POST with its Idempotency-Key header."""

    def __init__(self) -> None:
        self.posts: list[tuple[str, dict[str, Any]]] = []
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def _post(self, request: web.Request) -> web.Response:
        self.posts.append((request.headers.get("Idempotency-Key", ""), await request.json()))
        return web.json_response({"ok": True}, status=201)

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/holds", self._post)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        self.url = f"http://{host}:{port}/holds"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def actions(self) -> list[str]:
        return [body["action"] for _, body in self.posts]


@pytest.fixture
async def bank() -> AsyncIterator[Bank]:
    server = Bank()
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(T0)


@pytest.fixture
def settings(bank: Bank) -> Settings:
    return Settings(
        bank_url=bank.url,
        hold_expiry_s=EXPIRY_S,
        delivery_timeout_s=1.0,
        delivery_backoff_base_s=0.01,
        delivery_backoff_max_s=0.05,
    )


def _decision(
    phone: str,
    event_id: str,
    ts_ms: int = T0,
    level: int = 3,
    hold: bool = True,
    received_at_s: float | None = None,
) -> Decision:
    transfer = TransferRef(event_id, ts_ms, f"ACC-{phone[-4:]}", "ACC-MULE-1", 48_000.0, "CNY", received_at_s)
    return Decision(
        phone,
        event_id,
        ts_ms,
        0.97,
        level,
        "m-1",
        ("paid a new payee minutes after a long call from a virtual number",),
        *HOME,
        decided_at_s=T0 / 1000,
        hold=transfer if hold else None,
    )


async def _drain(r: aioredis.Redis, settings: Settings, clock: ManualClock, **kw: Any) -> int:
    async with HoldDeliverer(r, settings, clock=clock, **kw) as deliverer:
        return await deliverer.drain_once()


async def test_one_hold_per_transfer_even_when_dispatched_twice(
    r: aioredis.Redis, settings: Settings, bank: Bank, clock: ManualClock
) -> None:
    issued = _metric("fw_holds_total", event="issued")
    first = Dispatcher(r, settings, clock=clock)
    task = await first.handle(_decision("+8613800001111", "t-1"))
    assert task is not None
    await first.handle(_decision("+8613800001111", "t-1"))  # the broker redelivers the decision
    restarted = Dispatcher(r, settings, clock=clock)  # a restarted worker decides it once more
    await restarted.handle(_decision("+8613800001111", "t-1"))
    # A decision without a hold (a call) makes none.
    await restarted.handle(_decision("+8613800001111", "c-1", hold=False))

    assert await r.xlen(keys.HOLDS_OUTBOX) == 1
    assert await _drain(r, settings, clock) == 1
    assert await _drain(r, settings, clock) == 0  # nothing left over for a second deliverer
    hold_id = hold_id_for("t-1")
    assert bank.posts == [(f"{hold_id}:hold", bank.posts[0][1])]
    body = bank.posts[0][1]
    jsonschema.validate(body, HOLD_SCHEMA)
    assert body["action"] == "hold" and body["case_key"] == task["case_key"]
    assert body["transfer_event_id"] == "t-1" and body["expires_ms"] == T0 + int(EXPIRY_S * 1000)
    assert _metric("fw_holds_total", event="issued") == issued + 1
    record = await HoldStore(r, settings).get(hold_id)
    assert record.state == "held" and record.case_key == task["case_key"]
    events = [orjson.loads(e) for e in await r.lrange(keys.hold_events(hold_id), 0, -1)]
    assert [e["state"] for e in events] == ["delivered"]


async def test_hold_latency_counts_from_the_transfers_arrival_on_the_broker(
    r: aioredis.Redis, settings: Settings, bank: Bank, clock: ManualClock
) -> None:
    # The bank waits from the transfer, not from the decision: 0.3 s on the broker before it was scored.
    latency = REGISTRY.get_sample_value("fw_hold_latency_seconds_sum") or 0.0
    count = REGISTRY.get_sample_value("fw_hold_latency_seconds_count") or 0.0
    decision = _decision("+8613800004444", "t-4", received_at_s=T0 / 1000 - 0.3)
    assert await Dispatcher(r, settings, clock=clock).handle(decision) is not None
    clock.advance(0.1)
    assert await _drain(r, settings, clock) == 1
    assert REGISTRY.get_sample_value("fw_hold_latency_seconds_count") == count + 1
    assert REGISTRY.get_sample_value("fw_hold_latency_seconds_sum") == pytest.approx(latency + 0.4)


@pytest.mark.parametrize(
    ("outcome", "action", "state"), [("dissuaded", "cancel", "cancelled"), ("false_alarm", "release", "released")]
)
async def test_the_case_outcome_ends_the_hold_once(
    r: aioredis.Redis, settings: Settings, bank: Bank, clock: ManualClock, outcome: str, action: str, state: str
) -> None:
    phone = "+8613800002222"
    dispatcher = Dispatcher(r, settings, clock=clock)
    low = await dispatcher.handle(_decision(phone, "c-2", level=2, hold=False))  # an earlier call-centre task
    task = await dispatcher.handle(_decision(phone, "t-2", ts_ms=T0 + 60_000))
    assert low is not None and task is not None and low["case_key"] == task["case_key"]
    await _drain(r, settings, clock)
    lifecycle = TaskLifecycle(r, settings, clock=clock)
    clock.advance(600)
    await lifecycle.transition(task["task_id"], "resolved", DESK, outcome=outcome)
    # The case's other task resolved afterwards: the hold is ended already, nothing more goes to the bank.
    await lifecycle.transition(low["task_id"], "resolved", DESK, outcome=outcome)
    await _drain(r, settings, clock)
    hold_id = hold_id_for("t-2")
    assert bank.actions() == ["hold", action]
    key, body = bank.posts[1]
    assert key == f"{hold_id}:{action}" == body["idempotency_key"]
    jsonschema.validate(body, HOLD_SCHEMA)
    assert body["hold_id"] == hold_id and body["transfer_event_id"] == "t-2"
    record = await HoldStore(r, settings).get(hold_id)
    assert record.state == state and record.ended_by == DESK.name
    assert await r.zscore(keys.HOLDS_ACTIVE, hold_id) is None
    audit = [keys.text(f.get(b"action")) for _, f in await r.xrange(keys.AUDIT)]
    assert f"hold:{action}" in audit


async def test_an_unresolved_hold_lapses_at_expiry(
    r: aioredis.Redis, settings: Settings, bank: Bank, clock: ManualClock
) -> None:
    phone = "+8613800003333"
    task = await Dispatcher(r, settings, clock=clock).handle(_decision(phone, "t-3"))
    assert task is not None
    store = HoldStore(r, settings, clock=clock)
    hold_id = hold_id_for("t-3")
    clock.advance(EXPIRY_S - 1)
    assert await store.lapse_due() == 0 and (await store.get(hold_id)).state == "held"
    lapsed = _metric("fw_holds_total", event="lapsed")
    clock.advance(1)
    assert await store.lapse_due() == 1
    assert (await store.get(hold_id)).state == "lapsed"
    assert await store.lapse_due() == 0
    assert _metric("fw_holds_total", event="lapsed") == lapsed + 1
    # An outcome after the lapse ends nothing: the bank has let the transfer go already.
    await TaskLifecycle(r, settings, clock=clock).transition(task["task_id"], "resolved", DESK, outcome="dissuaded")
    await _drain(r, settings, clock)
    assert bank.actions() == ["hold"]


async def test_a_dispatcher_releases_a_hold_from_the_console(
    r: aioredis.Redis, redis_server: RunningService, bank: Bank, clock: ManualClock, tmp_path: Path
) -> None:
    tokens = write_demo_tokens(tmp_path, ["p1"])
    settings = Settings(bank_url=bank.url, hold_expiry_s=EXPIRY_S, console_tokens_file=tokens.path)
    task = await Dispatcher(r, settings, clock=clock).handle(_decision("+8613800004444", "t-4"))
    assert task is not None
    hold_id = hold_id_for("t-4")
    console = await start_console(settings, redis_server.url, watch_acks=False, clock=clock)
    try:
        async with httpx.AsyncClient(base_url=console.url, timeout=5) as http:
            desk = {"Authorization": f"Bearer {tokens.dispatcher}"}
            cases = (await http.get("/api/cases", headers=desk)).json()["cases"]
            assert [h["state"] for h in cases[0]["holds"]] == ["held"]
            officer = {"Authorization": f"Bearer {tokens.responders['p1']}"}
            assert (await http.post(f"/api/holds/{hold_id}/release", headers=officer, json={})).status_code == 403
            done = await http.post(f"/api/holds/{hold_id}/release", headers=desk, json={})
            assert done.status_code == 200 and done.json()["state"] == "released"
            again = await http.post(f"/api/holds/{hold_id}/release", headers=desk, json={})
            assert again.status_code == 409
            assert (await http.post("/api/holds/hold-nope/release", headers=desk, json={})).status_code == 404
            cases = (await http.get("/api/cases", headers=desk)).json()["cases"]
            assert [h["state"] for h in cases[0]["holds"]] == ["released"]
    finally:
        await console.stop()
    await _drain(r, settings, clock)
    assert bank.actions() == ["hold", "release"]
    audit = [(keys.text(f.get(b"role")), keys.text(f.get(b"action"))) for _, f in await r.xrange(keys.AUDIT)]
    assert ("dispatcher", "hold:release") in audit


async def test_holds_go_to_the_holds_topic_without_a_bank_url(
    r: aioredis.Redis, tansu: RunningService, clock: ManualClock
) -> None:
    topic = "test-holds.holds.v1"
    server = bootstrap(tansu.url)
    await create_topics(server, [topic], 1)
    settings = Settings(hold_expiry_s=EXPIRY_S)  # no FW_BANK_URL: published and recorded, not POSTed
    producer = AIOKafkaProducer(bootstrap_servers=server)
    await producer.start()
    try:

        async def publish(key: bytes, value: bytes) -> object:
            return await producer.send_and_wait(topic, value=value, key=key)

        dispatcher = Dispatcher(r, settings, clock=clock)
        await dispatcher.handle(_decision("+8613800005555", "t-5"))
        await dispatcher.handle(_decision("+8613800005555", "t-5"))
        assert await _drain(r, settings, clock, publish=publish) == 1
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=server, auto_offset_reset="earliest", group_id="test-holds")
    await consumer.start()
    try:
        got = await asyncio.wait_for(consumer.getmany(timeout_ms=5000), 20)
    finally:
        await consumer.stop()
    records = [rec for batch in got.values() for rec in batch]
    assert len(records) == 1
    assert records[0].key == hold_id_for("t-5").encode()
    message = orjson.loads(records[0].value)
    jsonschema.validate(message, HOLD_SCHEMA)
    assert message["action"] == "hold" and message["idempotency_key"] == f"{hold_id_for('t-5')}:hold"


async def test_a_hold_goes_to_the_topic_and_the_bank_at_once_and_a_failed_publish_is_retried(
    r: aioredis.Redis, bank: Bank, settings: Settings, clock: ManualClock
) -> None:
    # The bank's wait is one round trip, and a broker that is away does not keep the hold from the bank: the
    # publish is still in flight (and then fails) when the bank gets the POST.
    published: list[bytes] = []
    attempts = 0

    async def publish(key: bytes, value: bytes) -> object:
        nonlocal attempts
        attempts += 1
        for _ in range(200):
            if bank.posts:
                break
            await asyncio.sleep(0.01)
        assert bank.posts, "the POST waited for the topic"
        if attempts == 1:
            raise ConnectionError("broker away")  # the first publish fails after the bank answered
        published.append(key)
        return None

    dispatcher = Dispatcher(r, settings, clock=clock)
    await dispatcher.handle(_decision("+8613800006666", "t-6"))
    # The real clock for the retry's backoff (settings: 10-50 ms); a manual one would wait for an advance.
    async with HoldDeliverer(r, settings, clock=SYSTEM_CLOCK, publish=publish) as deliverer:
        assert await asyncio.wait_for(deliverer.drain_once(), 30) == 1
    assert published == [hold_id_for("t-6").encode()]  # on the topic once
    # The retry POSTed again under the same key, which the bank deduplicates; nothing else was sent.
    assert {key for key, _ in bank.posts} == {f"{hold_id_for('t-6')}:hold"} and len(bank.posts) == 2
    assert await r.xlen(keys.HOLDS_OUTBOX_DEAD) == 0


async def test_an_early_hold_reaches_the_bank_before_its_decision_is_handled_and_once_after(
    r: aioredis.Redis, settings: Settings, bank: Bank, clock: ManualClock
) -> None:
    phone = "+8613800006666"
    dispatcher = Dispatcher(r, settings, clock=clock)
    explained = _decision(phone, "t-6")
    early = dataclasses.replace(explained, reasons=())  # what the explain agent has before SHAP
    assert await dispatcher.issue_hold(early) is not None
    assert await _drain(r, settings, clock) == 1  # delivered with no case, no task, no reasons yet
    body = bank.posts[0][1]
    jsonschema.validate(body, HOLD_SCHEMA)
    assert body["reasons"] == []

    task = await dispatcher.handle(explained)  # the explained decision: its case and task, as before
    assert task is not None and task["reasons"] == list(explained.reasons)
    assert body["case_key"] == task["case_key"]  # the planned case is the one recorded
    assert await dispatcher.issue_hold(early) is None  # the broker redelivers the alert
    assert await r.xlen(keys.HOLDS_OUTBOX) == 0 and await _drain(r, settings, clock) == 0
    assert bank.actions() == ["hold"]
    record = await HoldStore(r, settings).get(hold_id_for("t-6"))
    assert record.case_key == task["case_key"]
    assert [h.hold_id for h in await HoldStore(r, settings).for_case(task["case_key"])] == [hold_id_for("t-6")]


async def test_an_early_hold_names_the_case_its_subscribers_earlier_alert_opens(
    r: aioredis.Redis, settings: Settings, bank: Bank, clock: ManualClock
) -> None:
    phone = "+8613800007777"
    dispatcher = Dispatcher(r, settings, clock=clock)
    call = _decision(phone, "c-7", ts_ms=T0 - 120_000, level=1, hold=False)
    transfer = _decision(phone, "t-7")
    await dispatcher.issue_hold(dataclasses.replace(transfer, reasons=()), earlier=[call])
    await dispatcher.handle(call)  # the call's alert is handled first: it opens the case
    await dispatcher.handle(transfer)
    relinked = _metric("fw_holds_total", event="relinked")
    record = await HoldStore(r, settings).get(hold_id_for("t-7"))
    case = await dispatcher.cases.open_case(phone, T0)
    assert case is not None and case.start_ms == T0 - 120_000 and record.case_key == case.case_key
    assert _metric("fw_holds_total", event="relinked") == relinked


async def test_a_hold_planned_under_another_case_moves_to_the_recorded_one_and_its_outcome_ends_it(
    r: aioredis.Redis, settings: Settings, bank: Bank, clock: ManualClock
) -> None:
    phone = "+8613800008888"
    dispatcher = Dispatcher(r, settings, clock=clock)
    relinked = _metric("fw_holds_total", event="relinked")
    transfer = _decision(phone, "t-8")
    # Planned without the earlier alert (as when another worker records it meanwhile): a case at the transfer.
    planned = await dispatcher.issue_hold(dataclasses.replace(transfer, reasons=()))
    assert planned is not None
    await dispatcher.handle(_decision(phone, "c-8", ts_ms=T0 - 60_000, level=1, hold=False))
    task = await dispatcher.handle(transfer)
    assert task is not None and task["case_key"] != planned["case_key"]
    assert _metric("fw_holds_total", event="relinked") == relinked + 1
    store = HoldStore(r, settings)
    assert (await store.get(hold_id_for("t-8"))).case_key == task["case_key"]
    assert [h.hold_id for h in await store.for_case(task["case_key"])] == [hold_id_for("t-8")]
    assert await store.for_case(planned["case_key"]) == []
    # The case's outcome ends it, once; the bank's messages keep the case key it was first sent.
    clock.advance(600)
    await TaskLifecycle(r, settings, clock=clock).transition(task["task_id"], "resolved", DESK, outcome="false_alarm")
    assert await _drain(r, settings, clock) == 2
    assert bank.actions() == ["hold", "release"]
    assert {body["case_key"] for _, body in bank.posts} == {planned["case_key"]}


async def test_a_worker_that_dies_between_issuing_and_delivering_a_hold_leaves_it_delivered_once(
    r: aioredis.Redis, settings: Settings, bank: Bank, clock: ManualClock
) -> None:
    phone = "+8613800009999"
    explained = _decision(phone, "t-9")
    early = dataclasses.replace(explained, reasons=())
    assert await Dispatcher(r, settings, clock=clock).issue_hold(early) is not None
    # Its deliverer takes the entry and dies before the POST; the alert was never acknowledged on the hop.
    async with HoldDeliverer(r, settings, clock=clock, consumer="dead-worker") as dead:
        await dead.outbox.ensure_group()
        assert len(await dead.outbox.read_new(count=10)) == 1
    # The next worker reads the alert again: the early issue and the handling find the hold and add nothing.
    successor = Dispatcher(r, settings, clock=clock)
    assert await successor.issue_hold(early) is None
    assert await successor.handle(explained) is not None
    assert await r.xlen(keys.HOLDS_OUTBOX) == 1
    # Its deliverer takes over the dead one's entry: one POST, one delivered record.
    assert await _drain(r, settings, clock, claim_idle_ms=0) == 1
    assert await _drain(r, settings, clock, claim_idle_ms=0) == 0
    assert bank.actions() == ["hold"]
    events = [orjson.loads(e) for e in await r.lrange(keys.hold_events(hold_id_for("t-9")), 0, -1)]
    assert [e["state"] for e in events] == ["delivered"]
