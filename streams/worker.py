"""The stream worker, built by :func:`build_worker`: topics, changelogged feature tables and four agents.

Data path (every hop keyed so one key's events meet on one partition):
  calls.v1 / transfers.v1 (raw bytes) --ingest--> calls-by-caller (calls by caller, transfers by payee account)
  --callers--> subscriber-events (key subscriber; calls carry the caller's snapshot, transfers the payee's)
  subscriber-events --score--> pending alerts --explain--> alerting (Redis case/outbox, HTTP delivery)
  score --feedback--> calls-by-caller (key caller or payee): "a callee of yours paid a new payee",
  "a payer of yours paid right after a suspicious call"; ``callers`` queues it on that key's state, where
  it counts from ``FEEDBACK_DELAY_MS`` of event time after the transfer (so the hop's latency does not
  change any feature while it is shorter than that delay). Feedback is not an event: never counted, scored
  or forwarded, and idempotent per (transfer event id, key).
Bad input never reaches Faust's deserialisers: topics carry raw bytes and ``ingest`` validates them, sending
failures to the dead-letter topic with their reason. Only ingest validates: the internal hops carry each event
in the ground floor's compact wire form (``core.kinds.to_wire``), trusted downstream.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import faust
import orjson

from alerting import AlertingRuntime, HoldSink
from core.errors import InvalidEvent
from core.settings import Settings
from models import ModelRegistry
from streams import codecs, faust_internals
from streams.agents import Agents
from streams.local_store import StoreMemory
from streams.produce import BatchSender
from streams.publisher import TopicPublisher
from streams.scoring_runtime import LiveModel, ShadowModel
from streams.state_table import StateTable
from streams.topics import CALLER_TABLE, SUBSCRIBER_TABLE, internal_topic
from streams.web import register_pages

__all__ = ["StreamWorker", "build_worker"]


@dataclass
class StreamWorker:
    """One worker: its Faust app and what the agents, timers and pages share."""

    settings: Settings
    app: faust.App
    live_model: LiveModel
    shadow_model: ShadowModel
    agents: Agents

    @property
    def alerting(self) -> AlertingRuntime | None:
        """The alerting runtime, once the worker has started it."""
        return self.agents.alerting

    def is_ready(self) -> bool:
        """Ready once the tables are recovered, a model is loaded, alerting is up and the group is joined."""
        app = self.app
        recovered = app.tables.recovery.completed.is_set() and not app.in_recovery  # type: ignore[attr-defined]
        return bool(
            recovered
            and self.live_model.scorer is not None
            and self.alerting is not None
            and not app.rebalancing
            and faust_internals.in_group(app)
        )


def build_worker(settings: Settings) -> StreamWorker:
    """A worker's Faust app with its topics, tables, agents, timers and web pages; nothing runs until started."""
    broker = settings.broker_url or "kafka://127.0.0.1:9092"
    faust_internals.install(settings.consumer_fetch_max_wait_ms)
    settings.state_path.mkdir(parents=True, exist_ok=True)  # Faust makes only the last level of its tabledir
    StoreMemory.configure(block_cache_mb=settings.state_block_cache_mb, write_buffer_mb=settings.state_write_buffer_mb)
    app = faust.App(
        settings.app_id,
        broker=broker,
        # memory: rebuilt from the changelog at each start; local: RocksDB that a restart reopens (local_store).
        store="memory://" if settings.state_store == "memory" else faust_internals.LOCAL_STORE_URL,
        datadir=str(settings.data_dir / "faust"),
        tabledir=str(settings.state_path.resolve()),
        topic_partitions=settings.partitions,
        topic_replication_factor=1,
        broker_session_timeout=settings.broker_session_timeout_s,
        broker_heartbeat_interval=settings.broker_heartbeat_interval_s,
        consumer_auto_offset_reset="earliest",
        key_serializer="raw",
        value_serializer="raw",
        web_port=settings.worker_web_port,
        web_bind=settings.worker_web_bind,
        web_tables_enabled=False,  # the built-in /table routes would expose subscriber state
        processing_guarantee="at_least_once",
        producer_linger=settings.producer_linger_s,
        table_standby_replicas=settings.table_standby_replicas,
    )

    def raw_topic(*names: str) -> Any:
        return app.topic(*names, key_type=bytes, value_type=bytes, partitions=settings.partitions)

    from core.kinds import KINDS

    input_topic = raw_topic(*dict.fromkeys(getattr(settings, kind.topic_setting) for kind in KINDS.values()))
    caller_topic = raw_topic(internal_topic(settings, settings.caller_calls_topic))
    subscriber_topic = raw_topic(internal_topic(settings, settings.enriched_calls_topic))
    dead_letter_topic = raw_topic(settings.dead_letter_topic)
    feature_topic = raw_topic(internal_topic(settings, "features"))
    pending_alert_topic = raw_topic(internal_topic(settings, settings.pending_alerts_topic))
    raw_topic(settings.holds_topic)  # declared so the worker creates it; published by its own producer below

    # Plain tables (not windowed: see shared notes) whose values are whole rolling-state objects.
    caller_table = app.Table(CALLER_TABLE, key_type=str, partitions=settings.partitions, use_partitioner=True)
    subscriber_table = app.Table(SUBSCRIBER_TABLE, key_type=str, partitions=settings.partitions, use_partitioner=True)
    for table in (caller_table, subscriber_table):
        # Values stay the records' bytes (streams.codecs): recovery copies them, nothing is decoded until read.
        faust_internals.rebuild_changelog_topic(table, "raw", "raw")

    async def send_dead_letter(raw: bytes, exc: InvalidEvent, source: str, partition: int, offset: int) -> None:
        envelope = {
            "reason": exc.reason,
            "detail": exc.detail,
            "topic": source,
            "partition": partition,
            "offset": offset,
            "payload": raw[:4096].decode("utf-8", errors="replace"),
            "rejected_at_ms": int(time.time() * 1000),
        }
        await dead_letter_topic.send(value=orjson.dumps(envelope))

    cache = settings.state_cache_keys
    caller_states = StateTable(
        caller_table, codecs.decode_key_state, BatchSender(app, _changelog(caller_table)), cache_keys=cache
    )
    subscriber_states = StateTable(
        subscriber_table,
        codecs.decode_subscriber_state,
        BatchSender(app, _changelog(subscriber_table)),
        cache_keys=cache,
    )
    live_model = LiveModel(ModelRegistry(settings.models_path))
    shadow_model = ShadowModel(ModelRegistry(settings.models_path))
    agents = Agents(
        settings=settings,
        live_model=live_model,
        shadow_model=shadow_model,
        caller_states=caller_states,
        subscriber_states=subscriber_states,
        # Internal hops carry packed records (many envelopes each): Faust's cost per consumed message is paid
        # once per partition and batch instead of once per event.
        to_callers=BatchSender(app, caller_topic.get_topic_name(), packed=True),
        to_subscribers=BatchSender(app, subscriber_topic.get_topic_name(), packed=True),
        to_explain=BatchSender(app, pending_alert_topic.get_topic_name()),
        send_dead_letter=send_dead_letter,
        feature_topic=feature_topic,
    )
    app.agent(input_topic, name="ingest")(agents.ingest)
    app.agent(caller_topic, name="callers")(agents.callers)
    app.agent(subscriber_topic, name="score")(agents.score)
    app.agent(pending_alert_topic, name="explain")(agents.explain)

    worker = StreamWorker(settings, app, live_model, shadow_model, agents)

    # Waits for the broker's ack: the hold's outbox entry is acknowledged only once it is on the topic.
    publish_hold = TopicPublisher(broker, settings.holds_topic)
    _add_timers(worker, caller_states, subscriber_states, publish_hold)
    register_pages(app, worker.is_ready, worker)
    return worker


def _changelog(table: Any) -> str:
    return str(table.changelog_topic.get_topic_name())


def _add_timers(
    worker: StreamWorker, caller_states: StateTable, subscriber_states: StateTable, hold_sink: HoldSink
) -> None:
    """The worker's periodic work: model reloads, idle-key expiry, idle ticks, key counts, lag; starting alerting."""
    from streams.metrics import CONSUMER_LAG, LIVE_KEYS

    app, agents = worker.app, worker.agents
    log = agents.log

    async def reload_model() -> None:
        """Pick up a newly promoted (or shadowed) model without a restart."""
        worker.live_model.refresh()
        worker.shadow_model.refresh()

    async def expire_idle_keys() -> None:
        """Drop keys silent for longer than the longest window (event time), so memory follows live keys.

        The deletes go to the changelog as tombstones, so a recovering worker does not bring them back.
        """
        now = agents.watermark_ms
        for states in (caller_states, subscriber_states):
            expired = await states.expire_idle(now)
            if expired:
                log.info("expired idle keys", extra={"table": states.table.name, "keys": expired})

    async def count_keys() -> None:
        """Report how many keys this worker holds in feature state."""
        LIVE_KEYS.labels(table="caller").set(len(caller_states))
        LIVE_KEYS.labels(table="subscriber").set(len(subscriber_states))

    async def report_lag() -> None:
        """Consumer lag per assigned input/internal partition (changelogs are recovery, not lag)."""
        consumer = app.consumer
        for tp in consumer.assignment():
            if tp.topic.endswith("-changelog"):
                continue
            try:
                highwater = consumer.highwater(tp)
            except Exception:  # partition just revoked: nothing to report
                continue
            read = faust_internals.read_offset(consumer, tp)
            if highwater is not None:
                lag = highwater - (read + 1 if read is not None else 0)
                CONSUMER_LAG.labels(topic=tp.topic, partition=str(tp.partition)).set(max(lag, 0))

    async def start_alerting() -> None:
        """Load the model and start the alerting runtime (Redis, outbox delivery) with the worker."""
        worker.live_model.refresh()
        worker.shadow_model.refresh()
        alerting = AlertingRuntime(worker.settings, hold_sink=hold_sink)
        await alerting.start()
        agents.alerting = alerting

    async def refit_thresholds() -> None:
        """Keep the levels' thresholds following the outcomes of recent tasks (streams/budget.py)."""
        scorer, alerting = worker.live_model.scorer, agents.alerting
        if scorer is not None and alerting is not None and agents.watermark_ms:
            await agents.budget.refit(alerting.redis, scorer, agents.watermark_ms)

    subscriber_topic = internal_topic(worker.settings, worker.settings.enriched_calls_topic)

    async def fire_idle_ticks() -> None:
        """Keep open calls' timers going on subscriber partitions that get no events (see ``tick_idle_s``)."""
        if app.rebalancing or app.in_recovery or not app.tables.recovery.completed.is_set():  # type: ignore[attr-defined]
            return  # a table still recovering would give a partition's timers without some of its open calls
        assigned = [tp.partition for tp in app.consumer.assignment() if tp.topic == subscriber_topic]
        await agents.fire_idle_ticks(assigned)

    def forget_timers(sender: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:
        """Partitions revoked or (re)assigned get their timers rebuilt from the recovered table when next met."""
        changed: set[Any] = args[0] if args else set()
        agents.forget_partitions(tp.partition for tp in changed if tp.topic == subscriber_topic)

    async def finish_early_holds(sender: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:
        """As the worker stops, a hold on its way to the bank gets to finish rather than being torn off."""
        unfinished = await agents.finish_early_holds()
        if unfinished:
            log.warning("early holds cancelled at shutdown", extra={"holds": unfinished})

    app.on_before_shutdown.connect(finish_early_holds)
    app.on_partitions_revoked.connect(forget_timers)
    app.on_partitions_assigned.connect(forget_timers)
    app.timer(interval=max(1.0, worker.settings.tick_idle_s / 2), name="fire_idle_ticks")(fire_idle_ticks)
    app.timer(interval=worker.settings.budget_update_s, name="refit_thresholds")(refit_thresholds)
    app.timer(interval=worker.settings.model_reload_s, name="reload_model")(reload_model)
    app.timer(interval=60.0, name="expire_idle_keys")(expire_idle_keys)
    app.timer(interval=5.0, name="count_keys")(count_keys)
    app.timer(interval=2.0, name="report_lag")(report_lag)
    app.task(start_alerting)
