"""The Faust app: topics, changelogged feature tables, and the three agents of the scoring path.

Data path (every hop keyed so one key's events meet on one partition):
  calls.v1 / transfers.v1 (raw bytes) --ingest--> calls-by-caller (calls by caller, transfers by payee account)
  --callers--> subscriber-events (key subscriber; calls carry the caller's snapshot, transfers the payee's)
  subscriber-events --score--> decision --> alerting (Redis case/outbox, HTTP delivery)
  score --feedback--> calls-by-caller (key caller or payee): "a callee of yours paid a new payee",
  "a payer of yours paid right after a suspicious call"; ``callers`` queues it on that key's state, where
  it counts from ``FEEDBACK_DELAY_MS`` of event time after the transfer (so the hop's latency does not
  change any feature while it is shorter than that delay). Feedback is not an event: never counted, scored
  or forwarded, and idempotent per (transfer event id, key).
Bad input never reaches Faust's deserialisers: topics carry raw bytes and ``ingest`` validates them,
sending failures to the dead-letter topic with their reason.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

import faust
import orjson
from faust.serializers import codecs as faust_codecs
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from core.decode import decode, decode_obj
from core.errors import AlertingStopped, InvalidEvent, MalformedPendingAlert
from core.events import CallEvent, Event, TransferEvent
from core.pseudonym import pseudonymise
from core.settings import get_settings
from features.state import (
    PAYEE_PREFIX,
    CallerSnapshot,
    CallerState,
    Feedback,
    PayeeSnapshot,
    PayeeState,
    SubscriberState,
    payee_key,
)
from features.vector import (
    FeatureRow,
    apply_feedback,
    available_at,
    caller_step,
    encode_row,
    payee_step,
    subscriber_step,
    transfer_feedback,
)
from models.explain import reasons
from models.registry import ModelRegistry
from streams import codecs, consumer_patches
from streams.metrics import (
    ALERT_ERRORS,
    ALERT_HANDOFF_SECONDS,
    CONSUMER_LAG,
    DEAD_LETTERS,
    DECISIONS,
    DUPLICATES,
    EVENT_TIME_LAG,
    EVENT_TO_DECISION,
    EVENTS_CONSUMED,
    EVENTS_SCORED,
    EXPLAIN_SECONDS,
    LIVE_KEYS,
    PACK_ARRIVAL,
    SCORE_BATCH,
    SCORE_SECONDS,
    SHADOW_DECISIONS,
)
from streams.pending_alerts import PendingAlert, decode_pending, encode_pending
from streams.produce import BatchSender, unpack
from streams.scoring_runtime import LiveModel, ShadowModel
from streams.topics import internal_topic

log = logging.getLogger("fraudwatch.worker")
settings = get_settings()
codecs.register()
consumer_patches.install(settings.consumer_fetch_max_wait_ms)

app = faust.App(
    settings.app_id,
    broker=settings.broker_url or "kafka://127.0.0.1:9092",
    store="memory://",  # state is rebuilt from the changelog topics: nothing on local disk to lose
    datadir=str(settings.data_dir / "faust"),
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


def _raw_topic(*names: str) -> Any:
    return app.topic(*names, key_type=bytes, value_type=bytes, partitions=settings.partitions)


input_topic = _raw_topic(settings.calls_topic, settings.transfers_topic)
caller_topic = _raw_topic(internal_topic(settings, settings.caller_calls_topic))
subscriber_topic = _raw_topic(internal_topic(settings, settings.enriched_calls_topic))
dead_letter_topic = _raw_topic(settings.dead_letter_topic)
feature_topic = _raw_topic(internal_topic(settings, "features"))
pending_alert_topic = _raw_topic(internal_topic(settings, settings.pending_alerts_topic))

# Plain tables (not windowed: see shared notes) whose values are whole rolling-state objects.
caller_table = app.Table("caller-state", key_type=str, partitions=settings.partitions, use_partitioner=True)
subscriber_table = app.Table("subscriber-state", key_type=str, partitions=settings.partitions, use_partitioner=True)
# Faust derives serializers from key/value types (json for anything but bytes); the state objects need
# their own codec. Registering the table (app.Table) already built its changelog topic with the derived
# json serializers: writes pass the table's serializers explicitly, but recovery and standbys decode with
# the topic's, so the topic is rebuilt here from the corrected attributes (else no restart can recover).
for _table, _codec in ((caller_table, codecs.CALLER_CODEC), (subscriber_table, codecs.SUBSCRIBER_CODEC)):
    _table.key_serializer = "raw"  # type: ignore[attr-defined]
    _table.value_serializer = _codec  # type: ignore[attr-defined]
    _table.changelog_topic = _table._new_changelog_topic()  # type: ignore[attr-defined]


live_model = LiveModel(ModelRegistry(settings.models_path))
shadow_model = ShadowModel(ModelRegistry(settings.models_path))
_alerting: Any = None  # alerting.runtime.AlertingRuntime, created on worker start


async def send_dead_letter(raw: bytes, exc: InvalidEvent, source: str, partition: int, offset: int) -> None:
    """Publish a rejected message with why it was rejected; count it."""
    DEAD_LETTERS.labels(reason=exc.reason).inc()
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


# Internal hops carry packed records (many envelopes each): Faust's cost per consumed message is paid
# once per partition and batch instead of once per event.
_to_callers = BatchSender(app, caller_topic.get_topic_name(), packed=True)
_to_subscribers = BatchSender(app, subscriber_topic.get_topic_name(), packed=True)
_to_explain = BatchSender(app, pending_alert_topic.get_topic_name())


class _StateTable:
    """Reads states from a table's store; writes a batch's changed states with one changelog batch per partition.

    Why not ``table[key] = state``: Faust sends each changelog record on its own (``send_soon`` with a
    callback per key), which cost as much per event as the hops themselves. The records are the same
    (key bytes, the table's codec, the partition of the key's murmur2 as ``use_partitioner`` picks it),
    they go through the same producer (so Faust's commit still flushes them first), and the in-memory
    store keeps no persisted offsets (recovery always reads the changelog from the start).
    """

    def __init__(self, table: Any, codec: str) -> None:
        self.table = table
        self.codec = codec
        self.sender = BatchSender(app, table.changelog_topic.get_topic_name())

    def current(self, key: str, touched: dict[str, Any], new: Callable[[], Any]) -> Any:
        """The key's newest state: changed earlier in this batch, else stored, else ``new()``.

        Read from the store: ``Table.get`` raises and catches an exception per new key.
        """
        return touched.get(key) or self.table.data.get(key) or new()

    async def write(self, states: dict[str, Any], after: Sequence[asyncio.Future[Any]] = ()) -> None:
        """Store each state under its key and queue its changelog record, once ``after`` has been delivered.

        ``after``: the delivery futures of the messages that carry the events these states now hold as seen.
        A replay after a crash skips those events as duplicates, so a state written before them was on the
        broker would lose them for good after a kill -9 (seen in the reliability tests, in both agents).
        """
        if after:
            await asyncio.gather(*after)
        if not states:
            return
        data = self.table.data
        records: list[tuple[bytes, bytes]] = []
        for key, state in states.items():
            data[key] = state
            records.append((key.encode(), faust_codecs.dumps(self.codec, state)))
        await self.sender.send_many(records)


_caller_states = _StateTable(caller_table, codecs.CALLER_CODEC)
_subscriber_states = _StateTable(subscriber_table, codecs.SUBSCRIBER_CODEC)
# Label children bound once: ``.labels()`` per event is a dict lookup behind a lock.
_children: dict[tuple[Any, tuple[str, ...]], Any] = {}
_caller_duplicates = DUPLICATES.labels(stage="caller")
_subscriber_duplicates = DUPLICATES.labels(stage="subscriber")
_payee_duplicates = DUPLICATES.labels(stage="payee")
_feedback_duplicates = DUPLICATES.labels(stage="feedback")
_callers_arrival = PACK_ARRIVAL.labels(stage="callers")
_score_arrival = PACK_ARRIVAL.labels(stage="score")
_scored = {True: EVENTS_SCORED.labels(kind="call.v1"), False: EVENTS_SCORED.labels(kind="transfer.v1")}


def _child(metric: Any, *values: str) -> Any:
    """``metric.labels(*values)``, looked up once per label set (for labels known only at run time)."""
    key = (metric, values)
    child = _children.get(key)
    if child is None:
        child = _children[key] = metric.labels(*values)
    return child


@app.agent(input_topic)
async def ingest(stream: Any) -> None:
    """Validate raw input; route calls to their caller's partition and transfers to the payee's.

    Stateless, so it works in batches: one produce call per partition and batch instead of one per event.
    Events are acknowledged after their batch is queued; Faust flushes the producer before it commits.
    """
    async for events in stream.take_events(settings.score_batch_max, within=settings.score_batch_wait_s):
        out: list[tuple[bytes, bytes]] = []
        counts: dict[tuple[str, str], int] = {}
        for event in events:
            message = event.message
            raw: bytes = event.value if event.value is not None else b""
            try:
                parsed = decode(raw, settings.max_event_bytes)
            except InvalidEvent as exc:
                await send_dead_letter(raw, exc, message.topic, message.partition, message.offset)
                log.warning("dead letter", extra={"reason": exc.reason, "topic": message.topic})
                continue
            counts[(message.topic, parsed.schema)] = counts.get((message.topic, parsed.schema), 0) + 1
            # The broker timestamp (Faust gives seconds) rides along to measure ingest-to-decision latency.
            envelope = orjson.dumps({"e": orjson.Fragment(raw), "t": message.timestamp})
            # Transfers take the same two hops as calls so that, under load, a transfer does not overtake
            # the call that came before it. On this hop they are keyed by payee (``callers`` adds the
            # payee's features): like a subscriber's calls from different numbers, its transfers to
            # different payees may then reach ``score`` in another order than they were sent.
            key = parsed.caller if isinstance(parsed, CallEvent) else payee_key(parsed.payee_account)
            out.append((key.encode(), envelope))
        for (topic, kind), n in counts.items():
            _child(EVENTS_CONSUMED, topic, kind).inc(n)
        await _to_callers.send_many(out)


def _in_arrival_order(
    batch: list[bytes], on_feedback: Callable[[Feedback], None] | None = None, arrival: Any = None
) -> list[tuple[Event, dict[str, Any]]]:
    """A batch's events (unpacked) with their envelopes, sorted by the event time they became known (stable).

    Why: a key's events reach this hop through different partitions of the previous one (a subscriber's
    calls come from many callers), so two events a few event-time seconds apart can arrive swapped; the
    offline engine processes them in availability order. Sorting each batch repairs the swaps that fall
    into one batch; a swap across batches is handled as a late event (it lands in its windows, but rows
    computed before it arrived do not see it). Feedback messages are handed to ``on_feedback`` first:
    they only count from their own effective time, so their place in the batch does not matter.
    ``arrival`` (a histogram child) observes each pack's age since ingest.
    """
    decoded: list[tuple[Event, dict[str, Any]]] = []
    now = time.time()
    for value in batch:
        envelopes = unpack(value)
        if arrival is not None and envelopes and (t_s := envelopes[0].get("t")):
            arrival.observe(max(0.0, now - t_s))  # once per pack: per-hop latency at no per-event cost
        for envelope in envelopes:
            if "f" in envelope:
                if on_feedback is not None:
                    on_feedback(Feedback.from_list(envelope["f"]))
                continue
            decoded.append((decode_obj(envelope["e"]), envelope))
    decoded.sort(key=lambda pair: available_at(pair[0]))
    return decoded


@app.agent(caller_topic)
async def callers(stream: Any) -> None:
    """Update the calling number's rolling state and pass its risk on to the callee's partition.

    Works in batches so that a busy number (a ring line, a call centre) is written to the changelog
    once per batch rather than once per call: its state is the largest there is.
    """
    async for batch in stream.take(settings.score_batch_max, within=settings.score_batch_wait_s):
        touched: dict[str, CallerState | PayeeState] = {}
        out: list[tuple[bytes, bytes]] = []
        for call, envelope in _in_arrival_order(
            batch, functools.partial(_take_feedback, touched=touched), _callers_arrival
        ):
            if not isinstance(call, CallEvent):
                if (payee_snap := _payee_step(call, touched)) is not None:
                    envelope["p"] = payee_snap.to_list()
                    out.append((call.subscriber.encode(), orjson.dumps(envelope)))
                continue
            state = _caller_states.current(call.caller, touched, CallerState)
            assert isinstance(state, CallerState)
            snap = caller_step(state, call)
            if snap is None:
                _caller_duplicates.inc()
                continue
            touched[call.caller] = state
            envelope["c"] = snap.to_list()
            out.append((call.callee.encode(), orjson.dumps(envelope)))
        await _caller_states.write(touched, after=await _to_subscribers.send_many(out))


def _payee_step(transfer: TransferEvent, touched: dict[str, CallerState | PayeeState]) -> PayeeSnapshot | None:
    """The receiving account's snapshot after this transfer; None (counted) for a duplicate."""
    key = payee_key(transfer.payee_account)
    state = _caller_states.current(key, touched, PayeeState)
    assert isinstance(state, PayeeState)
    snap = payee_step(state, transfer)
    if snap is None:
        _payee_duplicates.inc()
    else:
        touched[key] = state
    return snap


def _take_feedback(fb: Feedback, touched: dict[str, CallerState | PayeeState]) -> None:
    """Queue feedback on the caller or payee state it names (a repeat is dropped and counted)."""
    new = PayeeState if fb.key.startswith(PAYEE_PREFIX) else CallerState
    state = _caller_states.current(fb.key, touched, new)
    if apply_feedback(state, fb):
        touched[fb.key] = state
    else:
        _feedback_duplicates.inc()


async def _wait_for_model() -> Any:
    # Readiness keeps traffic away until a model is loaded; if one vanishes, wait rather than drop.
    while live_model.scorer is None:
        await asyncio.sleep(0.5)
    return live_model.scorer


@app.agent(subscriber_topic)
async def score(stream: Any) -> None:
    """Update subscriber state per event, score in micro-batches, queue risky rows for ``explain``.

    ``take()`` batches the model call (one predict per batch costs ~1 us/row against ~40 us for one
    row); the tables use the producer's partitioner so they can be written inside ``take()`` (#497),
    and events are acknowledged only after their batch is scored, so at-least-once still holds.
    """
    async for batch in stream.take(settings.score_batch_max, within=settings.score_batch_wait_s):
        rows: list[FeatureRow] = []
        ingest_s: list[float | None] = []
        touched: dict[str, SubscriberState] = {}
        feedback: list[Feedback] = []
        for event, envelope in _in_arrival_order(batch, arrival=_score_arrival):
            snap = CallerSnapshot.from_list(envelope["c"]) if "c" in envelope else None
            payee = PayeeSnapshot.from_list(envelope["p"]) if "p" in envelope else None
            state = _subscriber_states.current(event.subscriber, touched, SubscriberState)
            row = subscriber_step(state, event, snap, payee)
            if row is None:
                _subscriber_duplicates.inc()
                continue
            if isinstance(event, TransferEvent):
                feedback += transfer_feedback(state, event, row)
            touched[event.subscriber] = state
            rows.append(row)
            ingest_s.append(envelope.get("t"))
        if not rows:
            continue  # nothing new (``touched`` is empty too)
        published: list[Any] = []
        if settings.publish_features:
            for row in rows:
                published.append(await feature_topic.send(key=row.subscriber.encode(), value=encode_row(row)))
        scorer = live_model.scorer or await _wait_for_model()
        started = time.perf_counter()
        risks = scorer.score([r.values for r in rows])
        SCORE_SECONDS.observe(time.perf_counter() - started)
        SCORE_BATCH.observe(len(rows))
        _watermark["ms"] = max(_watermark["ms"], max(r.avail_ms for r in rows))
        now = time.time()
        pending: list[tuple[bytes, bytes]] = []
        for row, risk, t_s in zip(rows, risks.tolist(), ingest_s, strict=True):
            level = scorer.level(risk)
            _scored[row.is_call].inc()
            _child(DECISIONS, str(level)).inc()
            if t_s:
                EVENT_TO_DECISION.observe(max(0.0, now - t_s))
            EVENT_TIME_LAG.observe(max(0.0, now - row.avail_ms / 1000))
            if level:
                alert = PendingAlert(row, risk, level, scorer.version, now)
                pending.append((row.subscriber.encode(), encode_pending(alert)))
        # Explaining and acting on the alerts is the ``explain`` agent's work, so it does not hold up scoring.
        published += await _to_explain.send_many(pending)
        if shadow_model.scorer is not None:
            _score_shadow(shadow_model.scorer, rows, risks)
        # Feedback before the state write: a crash in between re-sends it, and its receiver drops repeats.
        await _to_callers.send_many([(fb.key.encode(), orjson.dumps({"f": fb.to_list()})) for fb in feedback])
        # One changelog write per key and batch, before the batch's events are acknowledged, and only after
        # their feature rows and pending alerts are on the broker. The state goes straight to the producer's
        # accumulator, ahead of Faust's send buffer, so waiting on the rows is what keeps it behind them.
        await _subscriber_states.write(touched, after=published)


@app.agent(pending_alert_topic)
async def explain(stream: Any) -> None:
    """Explain a batch's alerts (SHAP top features as sentences) and hand them to alerting, in event order."""
    async for events in stream.take_events(settings.score_batch_max, within=settings.score_batch_wait_s):
        alerts: list[PendingAlert] = []
        offsets: list[str] = []  # where each came from, for the log: an alert is traceable to its record
        for event in events:
            raw: bytes = event.value if event.value is not None else b""
            try:
                alerts.append(decode_pending(raw))
                offsets.append(f"{event.message.partition}:{event.message.offset}")
            except MalformedPendingAlert as exc:
                # Only this service writes the topic: a bad record is a bug or a version skew. Kept (dead
                # letters) and counted, like bad input.
                message = event.message
                reason = InvalidEvent("malformed_pending_alert", str(exc))
                await send_dead_letter(raw, reason, message.topic, message.partition, message.offset)
                log.error("unreadable pending alert", extra={"error": str(exc)})
        log.debug("pending alerts taken", extra={"sources": offsets})
        if not alerts:
            continue
        await _wait_for_model()  # returns at once when a model is loaded
        started = time.perf_counter()
        contributions = await _contributions(alerts)
        explained = time.perf_counter()
        EXPLAIN_SECONDS.observe(explained - started)
        for i, (alert, contrib) in enumerate(zip(alerts, contributions, strict=True)):
            try:
                await _alert(alert, contrib, offsets[i])
            except AlertingStopped:
                # Stopping while Redis is away: these are about to be acknowledged unhandled, so they go back
                # on the hop first (durable there; the next worker handles them).
                rest = [(a.row.subscriber.encode(), encode_pending(a)) for a in alerts[i:]]
                await asyncio.gather(*await _to_explain.send_many(rest))
                log.warning("stopped while redis was away: alerts put back", extra={"alerts": len(rest)})
                return
        ALERT_HANDOFF_SECONDS.observe(time.perf_counter() - explained)


async def _contributions(alerts: list[PendingAlert]) -> list[Any]:
    """SHAP contributions of each alert's row under the model version that scored it (when still loaded).

    One call per version (LightGBM's per-call cost dominated one row's), in a thread: LightGBM releases
    the GIL, so the other agents keep the event loop busy meanwhile.
    """
    by_version: dict[str, list[int]] = {}
    for i, alert in enumerate(alerts):
        by_version.setdefault(alert.model_version, []).append(i)
    out: list[Any] = [None] * len(alerts)
    for version, idx in by_version.items():
        scorer = live_model.scorer_of(version)
        assert scorer is not None  # the caller waited for a model
        if scorer.version != version:
            log.warning("alerts explained by a newer model", extra={"version": version, "alerts": len(idx)})
        contrib = await asyncio.to_thread(scorer.contributions_many, [alerts[i].row.values for i in idx])
        for i, c in zip(idx, contrib, strict=True):
            out[i] = c
    return out


def _score_shadow(shadow: Any, rows: list[FeatureRow], live_risks: Any) -> None:
    """Score the batch with the shadow model; log where it would alert or disagree, never act."""
    risks = shadow.score([r.values for r in rows])
    live = live_model.scorer
    for row, risk, live_risk in zip(rows, risks.tolist(), live_risks.tolist(), strict=True):
        level = shadow.level(risk)
        SHADOW_DECISIONS.labels(level=str(level)).inc()
        live_level = live.level(live_risk) if live is not None else 0
        if level or live_level:
            log.info(
                "shadow decision",
                extra={
                    "event_id": row.event_id,
                    "case_subscriber": pseudonymise(row.subscriber),
                    "shadow_version": shadow.version,
                    "shadow_level": level,
                    "live_level": live_level,
                    "shadow_score": round(risk, 4),
                },
            )


async def _alert(alert: PendingAlert, contributions: Any, source: str) -> None:
    """Word a risky event's reasons and hand it to alerting; a failed side effect never stops the stream."""
    row = alert.row
    decision = alert.decision(tuple(reasons(row.values, contributions)))
    log.info(
        "alert",
        extra={
            "case_subscriber": pseudonymise(row.subscriber),
            "event_id": row.event_id,
            "risk_level": alert.level,
            "source": source,  # partition:offset on the pending-alerts hop
        },
    )
    try:
        await _alerting.handle(decision)
    except AlertingStopped:
        raise
    except Exception as exc:
        ALERT_ERRORS.labels(error=type(exc).__name__).inc()
        log.exception("alerting failed", extra={"event_id": row.event_id})


@app.timer(interval=settings.model_reload_s)
async def reload_model() -> None:
    """Pick up a newly promoted (or shadowed) model without a restart."""
    live_model.refresh()
    shadow_model.refresh()


_watermark = {"ms": 0}  # the newest event time this worker has scored


@app.timer(interval=60.0)
async def expire_idle_keys() -> None:
    """Drop keys silent for longer than the longest window (event time), so memory follows live keys.

    The deletes go to the changelog as tombstones, so a recovering worker does not bring them back.
    """
    now = _watermark["ms"]
    for table in (caller_table, subscriber_table):
        idle = [key for key, state in list(table.items()) if state.idle(now)]
        for key in idle:
            del table[key]
        if idle:
            log.info("expired idle keys", extra={"table": table.name, "keys": len(idle)})


@app.timer(interval=5.0)
async def count_keys() -> None:
    """Report how many keys this worker holds in feature state."""
    LIVE_KEYS.labels(table="caller").set(len(caller_table))
    LIVE_KEYS.labels(table="subscriber").set(len(subscriber_table))


@app.timer(interval=2.0)
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
        read = consumer._read_offset.get(tp)  # type: ignore[attr-defined]
        if highwater is not None:
            lag = highwater - (read + 1 if read is not None else 0)
            CONSUMER_LAG.labels(topic=tp.topic, partition=str(tp.partition)).set(max(lag, 0))


@app.task
async def start_alerting() -> None:
    """Load the model and start the alerting runtime (Redis, outbox delivery) with the worker."""
    global _alerting
    from alerting.runtime import AlertingRuntime

    live_model.refresh()
    shadow_model.refresh()
    _alerting = AlertingRuntime(settings)
    await _alerting.start()


@app.page("/metrics")
async def metrics(web: Any, request: Any) -> Any:
    """Prometheus exposition of the service's own metrics."""
    # aiohttp refuses a charset inside content_type; the exposition format is plain UTF-8 text.
    return web.bytes(generate_latest(), content_type=CONTENT_TYPE_LATEST.split(";")[0])


@app.page("/healthz")
async def healthz(web: Any, request: Any) -> Any:
    """Liveness: the process answers."""
    return web.json({"status": "ok"})


def in_group() -> bool:
    """The consumer holds its assignment from a group coordinator it can reach (False while it re-joins).

    Why: Faust's ``rebalancing`` turns true only once a re-join starts, but a lost coordinator (a broker
    restart) is known earlier, at the failed heartbeat; events taken in between are the ones at risk.
    Reads aiokafka internals (as ``consumer_patches`` does): re-check on each faust-streaming/aiokafka upgrade.
    """
    try:
        consumer = app.consumer._thread._ensure_consumer()  # type: ignore[attr-defined]
    except Exception:  # not started yet, or the consumer is being rebuilt
        return False
    coordinator = getattr(consumer, "_coordinator", None)
    subscription = consumer._subscription.subscription
    if coordinator is None or subscription is None:
        return False
    return coordinator.coordinator_id is not None and not coordinator.need_rejoin(subscription)


def is_ready() -> bool:
    """Ready once the tables are recovered, a model is loaded, alerting is up and the group is joined."""
    recovered = app.tables.recovery.completed.is_set() and not app.in_recovery  # type: ignore[attr-defined]
    return bool(
        recovered and live_model.scorer is not None and _alerting is not None and not app.rebalancing and in_group()
    )


@app.page("/readyz")
async def readyz(web: Any, request: Any) -> Any:
    """Readiness, with the reasons when not ready."""
    body = {
        "ready": is_ready(),
        "model": live_model.scorer.version if live_model.scorer else None,
        "recovering": bool(app.in_recovery),
        "alerting": _alerting is not None,
        "in_group": in_group(),
    }
    return web.json(body, status=200 if body["ready"] else 503)
