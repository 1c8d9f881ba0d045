"""Task lifecycle, ack deadline and stale responders against a real redis-server and real HTTP endpoints."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
import redis.asyncio as aioredis
from aiohttp import web
from prometheus_client import REGISTRY

from alerting import keys
from alerting.ackwatch import AckWatcher
from alerting.audit import Actor
from alerting.decision import Decision
from alerting.delivery import Deliverer
from alerting.dispatcher import Dispatcher
from alerting.labels import LabelPublisher
from alerting.lifecycle import TaskLifecycle
from alerting.tasks import TaskStore
from core.clock import ManualClock
from core.errors import InvalidTransition, UnknownTask
from core.settings import Settings
from sandbox.receiver import ReceiverServer

pytestmark = pytest.mark.integration

HOME = (31.2304, 121.4737)
KM_LAT = 1 / 111.2
T0 = 1_700_000_000_000
DISPATCHER = Actor("desk-1", "dispatcher")
OFFICER = Actor("officer-p1", "responder")
LIFECYCLE_STATES = {"created", "assigned", "acknowledged", "en_route", "on_scene", "resolved"}


def _metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


class Supervisor:
    """A local stand-in for the unit supervisor's escalation endpoint."""

    def __init__(self, status: int = 200) -> None:
        self.received: list[dict[str, Any]] = []
        self.status = status
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def _post(self, request: web.Request) -> web.Response:
        self.received.append(await request.json())
        return web.json_response({"ok": True}, status=self.status)

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/escalations", self._post)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        self.url = f"http://{host}:{port}/escalations"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


@pytest.fixture
async def supervisor() -> AsyncIterator[Supervisor]:
    server = Supervisor()
    await server.start()
    yield server
    await server.stop()


def _settings(**kw: Any) -> Settings:
    base: dict[str, Any] = {
        "delivery_timeout_s": 1.0,
        "delivery_max_attempts": 3,
        "delivery_backoff_base_s": 0.01,
        "delivery_backoff_max_s": 0.05,
        "responder_search_radii_km": (2.0, 5.0, 10.0),
        "ack_deadline_s": 30.0,
        "responder_stale_s": 300.0,
    }
    return Settings(**{**base, **kw})


def _responder(rid: str, km_north: float, *, unit: str = "U1", status: str = "available") -> dict[str, Any]:
    return {
        "responder_id": rid,
        "kind": "police",
        "unit": unit,
        "lat": HOME[0] + km_north * KM_LAT,
        "lon": HOME[1],
        "status": status,
    }


def _decision(subscriber: str, level: int = 3, **kw: Any) -> Decision:
    return Decision(
        subscriber=subscriber,
        event_id=f"e-{subscriber}",
        ts_ms=T0,
        score=0.93,
        level=level,
        model_version="m-test-7",
        reasons=("caller posed as police", "large transfer being set up"),
        lat=kw.get("lat", HOME[0]),
        lon=kw.get("lon", HOME[1]),
        threshold=0.9,
    )


async def test_lifecycle_end_to_end(r: aioredis.Redis) -> None:
    settings = _settings()
    sent: list[tuple[bytes, bytes]] = []

    async def kafka(key: bytes, value: bytes) -> None:
        sent.append((key, value))

    dispatcher = Dispatcher(r, settings)
    life = TaskLifecycle(r, settings)
    phone = "+8613800002001"
    # Nobody on duty yet: the task is created unassigned and waits for the desk.
    task = await dispatcher.handle(_decision(phone))
    assert task is not None and task["responder_id"] is None
    assert (await life.get(task["task_id"])).state == "created"

    receiver = ReceiverServer()
    await receiver.start()
    try:
        async with Deliverer(r, settings, url=receiver.tasks_url) as deliverer:
            assert await deliverer.drain_once() == 1
    finally:
        await receiver.stop()
    assert [t["task_id"] for t in receiver.receiver.tasks] == [task["task_id"]]

    await dispatcher.registry.load([_responder("p1", 0.4), _responder("p2", 1.2)])
    acked_before = _metric("fw_ack_seconds_count")
    resolved_before = _metric("fw_task_transitions_total", state="resolved")

    st = await life.assign(task["task_id"], "p1", DISPATCHER)
    assert st.state == "assigned" and st.responder_id == "p1"
    assert (await dispatcher.registry.get("p1"))["status"] == "busy"  # type: ignore[index]
    for state in ("acknowledged", "en_route", "on_scene"):
        assert (await life.transition(task["task_id"], state, OFFICER)).state == state
    done = await life.transition(task["task_id"], "resolved", OFFICER, outcome="dissuaded")
    assert done.state == "resolved" and done.outcome == "dissuaded"

    # History: every lifecycle step with its time and actor (delivery entries interleave).
    events = await TaskStore(r).events(task["task_id"])
    steps = [e for e in events if e["state"] in LIFECYCLE_STATES]
    assert [e["state"] for e in steps] == [
        "created", "assigned", "acknowledged", "en_route", "on_scene", "resolved",
    ]  # fmt: skip
    assert "delivered" in [e["state"] for e in events]
    assert all(isinstance(e["at_ms"], int) and e["actor"] for e in steps)
    assert steps[1]["actor"] == "desk-1" and steps[1]["responder_id"] == "p1"
    assert steps[-1]["actor"] == "officer-p1" and steps[-1]["outcome"] == "dissuaded"

    # The label, in Redis and through the injected Kafka sink.
    rows = await r.xrange(keys.LABELS)
    assert len(rows) == 1
    label = orjson.loads(rows[0][1][b"label"])
    assert label == {
        "format": "label.v1",
        "case_key": task["case_key"],
        "subscriber": phone,
        "task_id": task["task_id"],
        "level": 3,
        "action": "face_to_face",
        "score": 0.93,
        "threshold": 0.9,
        "outcome": "dissuaded",
        "target": 1,
        "intervened": True,
        "task_created_ms": T0,
        "episode_start_ms": T0,
        "episode_end_ms": T0,
        "resolved_ms": label["resolved_ms"],
        "model_version": "m-test-7",
    }
    assert abs(label["resolved_ms"] - time.time() * 1000) < 60_000
    # The publisher copies it to the labels topic once, keyed by the subscriber; a second round sends nothing.
    publisher = LabelPublisher(r, settings, kafka, consumer="t1")
    await publisher.ensure_group()
    assert await publisher.publish_once() == 1
    assert await publisher.publish_once() == 0
    assert sent == [(phone.encode(), rows[0][1][b"label"])]

    # Released, closed, audited, counted.
    assert (await dispatcher.registry.get("p1"))["status"] == "available"  # type: ignore[index]
    assert await r.zscore(keys.TASKS_OPEN, task["task_id"]) is None
    assert await r.zscore(keys.TASKS_AWAITING_ACK, task["task_id"]) is None
    actions = [keys.text(f[b"action"]) for _, f in await r.xrange(keys.AUDIT)]
    steps_audited = ["transition:" + s for s in ("acknowledged", "en_route", "on_scene", "resolved")]
    assert actions == ["create", "assign", *steps_audited]
    assert _metric("fw_ack_seconds_count") - acked_before == 1
    assert _metric("fw_task_transitions_total", state="resolved") - resolved_before == 1


async def test_invalid_transitions_are_refused(r: aioredis.Redis) -> None:
    settings = _settings()
    dispatcher = Dispatcher(r, settings)
    await dispatcher.registry.load([_responder("p1", 0.4)])
    life = TaskLifecycle(r, settings)
    task = await dispatcher.handle(_decision("+8613800002002"))
    assert task is not None and task["responder_id"] == "p1"
    tid = task["task_id"]
    assert (await life.get(tid)).state == "assigned"  # claimed at dispatch: created and assigned in one commit

    events_before = await TaskStore(r).events(tid)
    for state, outcome in (
        ("on_scene", None),  # skips acknowledged and en_route
        ("en_route", None),
        ("resolved", None),  # resolving needs an outcome
        ("resolved", "paid_anyway"),  # unknown outcome
        ("acknowledged", "dissuaded"),  # only resolved takes one
        ("teleported", None),
        ("assigned", None),  # assignment goes through assign()
    ):
        with pytest.raises(InvalidTransition):
            await life.transition(tid, state, OFFICER, outcome=outcome)
    with pytest.raises(InvalidTransition):
        await life.assign(tid, "p1", DISPATCHER)  # already theirs
    assert await TaskStore(r).events(tid) == events_before
    assert (await life.get(tid)).state == "assigned"

    await life.transition(tid, "acknowledged", OFFICER)
    with pytest.raises(InvalidTransition):
        await life.transition(tid, "acknowledged", OFFICER)  # no repeats
    await life.transition(tid, "resolved", DISPATCHER, outcome="false_alarm")
    for state in ("acknowledged", "en_route", "on_scene"):
        with pytest.raises(InvalidTransition):
            await life.transition(tid, state, OFFICER)
    with pytest.raises(InvalidTransition):
        await life.transition(tid, "resolved", OFFICER, outcome="dissuaded")  # a label is written once
    assert await r.xlen(keys.LABELS) == 1
    with pytest.raises(UnknownTask):
        await life.transition("no-such-task", "acknowledged", OFFICER)


async def test_ack_deadline_reassigns_to_next_nearest_and_escalates(r: aioredis.Redis, supervisor: Supervisor) -> None:
    settings = _settings(supervisor_url=supervisor.url)
    clock = ManualClock()
    dispatcher = Dispatcher(r, settings, clock=clock)
    await dispatcher.registry.load(
        [_responder("near", 0.3), _responder("other-unit", 0.6, unit="U2"), _responder("mid", 1.0)]
    )
    life = TaskLifecycle(r, settings, clock=clock)
    watcher = AckWatcher(life)
    escalations_before = _metric("fw_escalations_total")
    try:
        task = await dispatcher.handle(_decision("+8613800002003"))
        assert task is not None and task["responder_id"] == "near"
        tid = task["task_id"]
        assigned_ms = (await life.get(tid)).assigned_ms
        assert assigned_ms == clock.now_ms()

        clock.advance(29)
        assert await watcher.check_once() == []  # inside the deadline
        clock.advance(2)
        t1 = clock.now_ms()
        assert t1 == assigned_ms + 31_000
        made = await watcher.check_once()
        # Same unit first within the ring: "mid" over the nearer responder of another unit.
        assert [(e["previous_responder_id"], e["new_responder_id"]) for e in made] == [("near", "mid")]
        assert made[0]["overdue_s"] == 31.0 and made[0]["escalated_ms"] == t1
        st = await life.get(tid)
        assert st.state == "assigned" and st.responder_id == "mid" and st.assigned_ms == t1
        assert st.tried == ("near", "mid")
        assert (await dispatcher.registry.get("near"))["status"] == "available"  # type: ignore[index]
        assert supervisor.received == made and made[0]["unit"] == "U1" and made[0]["task_id"] == tid
        last = (await TaskStore(r).events(tid))[-1]
        assert last["state"] == "assigned" and last["reason"] == "ack_deadline" and last["actor"] == "ack-watcher"
        assert last["at_ms"] == t1

        # Next miss: "near" is free again and nearer, but it already had its chance.
        clock.advance(29)
        assert await watcher.check_once() == []  # the reassignment started a new deadline
        clock.advance(2)
        made = await watcher.check_once()
        assert [(e["previous_responder_id"], e["new_responder_id"]) for e in made] == [("mid", "other-unit")]

        # Nobody left to try: the supervisor hears of it, the task stays with its responder, asked once.
        clock.advance(31)
        assert clock.now_ms() == t1 + 62_000
        made = await watcher.check_once()
        assert [(e["previous_responder_id"], e["new_responder_id"]) for e in made] == [("other-unit", None)]
        assert (await life.get(tid)).responder_id == "other-unit"
        assert (await TaskStore(r).events(tid))[-1]["state"] == "ack_overdue"
        clock.advance(31)
        assert await watcher.check_once() == []
        assert len(supervisor.received) == 3
        assert _metric("fw_escalations_total") - escalations_before == 3

        # Acknowledged in time: nothing to escalate, however late it gets.
        task2 = await dispatcher.handle(_decision("+8613800002004"))
        assert task2 is not None and task2["responder_id"] == "near"
        await life.transition(task2["task_id"], "acknowledged", OFFICER)
        clock.advance(3600)
        assert await watcher.check_once() == []
        assert await r.zcard(keys.TASKS_AWAITING_ACK) == 0
    finally:
        await watcher.aclose()


async def test_running_watcher_escalates_once_the_clock_passes_the_deadline(
    r: aioredis.Redis, supervisor: Supervisor
) -> None:
    """The background loop, not just one check: it looks every ack_check_interval_s of its clock."""
    settings = _settings(supervisor_url=supervisor.url, ack_check_interval_s=5.0)
    clock = ManualClock()
    dispatcher = Dispatcher(r, settings, clock=clock)
    await dispatcher.registry.load([_responder("a", 0.3), _responder("b", 0.8)])
    life = TaskLifecycle(r, settings, clock=clock)
    watcher = AckWatcher(life)
    stop = asyncio.Event()
    task = await dispatcher.handle(_decision("+8613800002010"))
    assert task is not None and task["responder_id"] == "a"
    loop = asyncio.create_task(watcher.run(stop))
    try:
        await asyncio.wait_for(clock.sleeping(), 10)  # first look done: nothing due, waiting 5 s
        assert clock.sleepers == [5.0] and supervisor.received == []
        for _ in range(5):  # 25 s: five more looks, still inside the 30 s deadline
            clock.advance(5)
            await asyncio.wait_for(clock.sleeping(), 10)
        assert supervisor.received == []
        clock.advance(5)  # 30 s: due
        await asyncio.wait_for(clock.sleeping(), 10)
        assert [e["new_responder_id"] for e in supervisor.received] == ["b"]
        assert (await life.get(task["task_id"])).responder_id == "b"
    finally:
        stop.set()
        await asyncio.wait_for(loop, 10)  # a stop ends the loop's pause at once, whatever the clock says
        await watcher.aclose()


async def test_escalation_post_failure_is_not_fatal(r: aioredis.Redis) -> None:
    bad = Supervisor(status=503)
    await bad.start()
    settings = _settings(supervisor_url=bad.url, supervisor_timeout_s=1.0)
    clock = ManualClock()
    dispatcher = Dispatcher(r, settings, clock=clock)
    await dispatcher.registry.load([_responder("a", 0.3), _responder("b", 0.8)])
    life = TaskLifecycle(r, settings, clock=clock)
    watcher = AckWatcher(life)
    failures_before = _metric("fw_escalation_post_failures_total")
    try:
        task = await dispatcher.handle(_decision("+8613800002005"))
        assert task is not None
        clock.advance(31)
        made = await watcher.check_once()
        assert [e["new_responder_id"] for e in made] == ["b"]
        assert (await life.get(task["task_id"])).responder_id == "b"
        assert len(bad.received) == 1
        assert _metric("fw_escalation_post_failures_total") - failures_before == 1
    finally:
        await watcher.aclose()
        await bad.stop()


async def test_stale_responder_is_skipped(r: aioredis.Redis) -> None:
    settings = _settings(responder_stale_s=300.0)
    clock = ManualClock()
    dispatcher = Dispatcher(r, settings, clock=clock)
    reg = dispatcher.registry
    await reg.load([_responder("quiet", 0.2)])
    await reg.heartbeat("quiet", HOME[0] + 0.2 * KM_LAT, HOME[1])
    clock.advance(360)
    # "quiet" last reported six minutes ago; "roster" never reported but was loaded just now (fresh).
    await reg.load([_responder("roster", 1.5)])
    task = await dispatcher.handle(_decision("+8613800002006"))
    assert task is not None and task["responder_id"] == "roster"
    assert (await reg.get("quiet"))["status"] == "available"  # type: ignore[index]

    # A fresh heartbeat makes it assignable again.
    await reg.heartbeat("quiet", HOME[0] + 0.2 * KM_LAT, HOME[1])
    task2 = await dispatcher.handle(_decision("+8613800002007"))
    assert task2 is not None and task2["responder_id"] == "quiet"

    # Loaded-but-silent responders go stale too, responder_stale_s after the load.
    await reg.load([_responder("later", 0.1)])
    clock.advance(299)
    assert (await reg.claim_nearest(*HOME, None, (2.0,)))["responder_id"] == "later"  # type: ignore[index]
    assert await reg.release("later")
    clock.advance(2)
    assert await reg.claim_nearest(*HOME, None, (2.0,)) is None
    assert reg.is_stale(await reg.get("later") or {})


async def test_heartbeat_status_rules(r: aioredis.Redis) -> None:
    settings = _settings()
    dispatcher = Dispatcher(r, settings)
    reg = dispatcher.registry
    await reg.load([_responder("p", 0.5)])
    assert await reg.heartbeat("p", *HOME, status="off_duty") == "off_duty"
    assert await reg.claim_nearest(*HOME, None, (2.0,)) is None
    assert await reg.heartbeat("p", *HOME, status="available") == "available"
    task = await dispatcher.handle(_decision("+8613800002008"))
    assert task is not None and task["responder_id"] == "p"
    # The app cannot free a responder that holds a task, nor send it off duty mid-task.
    assert await reg.heartbeat("p", *HOME, status="available") == "busy"
    assert await reg.heartbeat("p", *HOME, status="off_duty") == "busy"
    moved = await reg.get("p")
    assert moved is not None and moved["lat"] == pytest.approx(HOME[0]) and moved["seen_ms"] > 0


async def test_a_label_the_topic_refused_is_published_later_once(r: aioredis.Redis) -> None:
    settings = _settings()
    up = False
    sent: list[bytes] = []

    async def flaky(key: bytes, value: bytes) -> None:
        if not up:
            raise ConnectionError("broker down")
        sent.append(value)

    dispatcher = Dispatcher(r, settings)
    await dispatcher.registry.load([_responder("p", 0.5)])
    life = TaskLifecycle(r, settings)
    task = await dispatcher.handle(_decision("+8613800002009"))
    assert task is not None
    await life.transition(task["task_id"], "acknowledged", OFFICER)
    st = await life.transition(task["task_id"], "resolved", OFFICER, outcome="unreachable")
    assert st.state == "resolved" and await r.xlen(keys.LABELS) == 1
    assert (await reg_status(r, "p")) == "available"

    first = LabelPublisher(r, settings, flaky, consumer="dies")
    await first.ensure_group()
    with pytest.raises(Exception, match="refused"):
        await first.publish_once()
    assert sent == []
    # The first replica is gone with the label read but unacknowledged: another one takes it over once idle.
    up = True
    other = LabelPublisher(r, settings.model_copy(update={"label_claim_idle_s": 0.05}), flaky, consumer="lives")
    await asyncio.sleep(0.1)
    assert await other.publish_once() == 1
    assert await other.publish_once() == 0 and await first.publish_once() == 0
    assert [orjson.loads(v)["outcome"] for v in sent] == ["unreachable"]
    assert orjson.loads(sent[0])["target"] is None


async def reg_status(r: aioredis.Redis, rid: str) -> str | None:
    return keys.text(await r.hget(keys.responder(rid), "status"))


async def test_stand_in_responders_resolve_open_tasks_and_the_outcomes_feed_the_thresholds(r: aioredis.Redis) -> None:
    from alerting import recent_outcomes, resolve_open_tasks

    settings = _settings()
    dispatcher = Dispatcher(r, settings)
    victim, bystander = "+8613800009001", "+8613800009002"
    for phone in (victim, bystander):
        assert await dispatcher.handle(_decision(phone)) is not None
    outcome = {victim: "dissuaded"}
    created = [
        int(orjson.loads(await r.get(keys.task(keys.text(t) or "")))["created_ms"])
        for t in await r.zrange(keys.TASKS_OPEN, 0, -1)
    ]
    # A visit resolves hours after its task: one created at or after the cut-off stays open.
    assert await resolve_open_tasks(r, settings, lambda sub: "false_alarm", "demo-responders", min(created)) == 0
    resolved = await resolve_open_tasks(r, settings, lambda sub: outcome.get(sub, "false_alarm"), "demo-responders")
    assert resolved == 2
    assert await r.zcard(keys.TASKS_OPEN) == 0
    # Each became an outcome label, which is what the followed thresholds read (False: the victim's visit).
    assert sorted(await recent_outcomes(r, 10)) == [(victim, False), (bystander, True)]
    # Nothing is left open: a second pass resolves nothing and writes no label twice.
    assert await resolve_open_tasks(r, settings, lambda sub: "false_alarm", "demo-responders") == 0
    assert len(await recent_outcomes(r, 10)) == 2
