"""The four agents of the scoring path, as methods of one object that is handed everything it uses."""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any

import orjson

from alerting import AlertingRuntime, Decision, TransferRef
from core.decode import decode_obj
from core.errors import AlertingStopped, InvalidEvent, MalformedPendingAlert
from core.events import CallEvent, TransferEvent, occasion_of
from core.kinds import from_wire
from core.levels import decide_levels
from core.pseudonym import pseudonymise
from core.settings import Settings
from features import (
    FEATURE_INDEX,
    CallerSnapshot,
    FeatureRow,
    Feedback,
    KeyState,
    PayeeSnapshot,
    SubscriberState,
    TickIndex,
    available_at,
    encode_row,
    feedback_stage,
    key_state_type,
    steps_for,
    tick_call_id,
)
from models import reasons
from streams.budget import LiveBudget
from streams.ingest import Fanout, Ignored, Rejected, route_raw
from streams.metrics import (
    ALERT_ERRORS,
    ALERT_HANDOFF_SECONDS,
    DEAD_LETTERS,
    DECISIONS,
    DUPLICATES,
    EVENT_TIME_LAG,
    EVENT_TO_DECISION,
    EVENTS_CONSUMED,
    EVENTS_IGNORED,
    EVENTS_SCORED,
    EXPLAIN_SECONDS,
    IN_CALL_ALERTS,
    PACK_ARRIVAL,
    SCORE_BATCH,
    SCORE_SECONDS,
    SHADOW_DECISIONS,
    TICKS_FIRED,
)
from streams.pending_alerts import PendingAlert, decode_pending, encode_pending, holds_first
from streams.produce import BatchSender, partition_of, unpack
from streams.scoring_runtime import LiveModel, ShadowModel
from streams.state_table import StateTable

__all__ = ["Agents"]

log = logging.getLogger("fraudwatch.worker")
DeadLetterSender = Callable[[bytes, InvalidEvent, str, int, int], Awaitable[None]]

# Label children bound once: ``.labels()`` per event is a dict lookup behind a lock.
_children: dict[tuple[Any, tuple[str, ...]], Any] = {}
_subscriber_duplicates = DUPLICATES.labels(stage="subscriber")
# The key stage's duplicates, labelled by what it keeps state for (as before: caller, payee).
_key_duplicates = {CallerSnapshot: DUPLICATES.labels(stage="caller"), PayeeSnapshot: DUPLICATES.labels(stage="payee")}
_feedback_duplicates = DUPLICATES.labels(stage="feedback")
_callers_arrival = PACK_ARRIVAL.labels(stage="callers")
_score_arrival = PACK_ARRIVAL.labels(stage="score")
_ON_CALL = FEATURE_INDEX["oncall_calls"]
_UNHANDLED_KEYS_MAX = 100_000  # subscribers with alerts on the hop that ``Agents._unhandled`` keeps count of
_EARLY_HOLDS_MAX = 64  # background hold issues in flight; past it, ``explain`` issues the holds


def _hold_plans(
    alerts: Sequence[PendingAlert], ready: Callable[[str], bool] = lambda subscriber: True
) -> list[tuple[Decision, list[Decision]]]:
    """Each held alert's decision, for a subscriber ``ready`` says may have its holds issued now, with the same
    subscriber's alerts before it in ``alerts`` (decided first, so the hold's planned case must count them)."""
    plans: list[tuple[Decision, list[Decision]]] = []
    for i, alert in enumerate(alerts):
        subscriber = alert.row.subscriber
        if alert.hold is not None and ready(subscriber):
            earlier = [a.decision(located=False) for a in alerts[:i] if a.row.subscriber == subscriber]
            plans.append((alert.decision(located=False), earlier))
    return plans


def _transfer_ref(event: Any, received_at_s: float | None) -> TransferRef | None:
    """What a hold of this event would name, if it is a transfer (on the broker since ``received_at_s``)."""
    if not isinstance(event, TransferEvent):
        return None
    return TransferRef(
        event.event_id,
        event.ts_ms,
        event.payer_account,
        event.payee_account,
        event.amount,
        event.currency,
        received_at_s,
    )


def _child(metric: Any, *values: str) -> Any:
    """``metric.labels(*values)``, looked up once per label set (for labels known only at run time)."""
    key = (metric, values)
    child = _children.get(key)
    if child is None:
        child = _children[key] = metric.labels(*values)
    return child


def _in_arrival_order(
    batch: list[bytes], on_feedback: Callable[[Feedback], None] | None = None, arrival: Any = None
) -> list[tuple[Any, dict[str, Any]]]:
    """A batch's events (unpacked) with their envelopes, sorted by the event time they became known (stable).

    Why: a key's events reach this hop through different partitions of the previous one (a subscriber's
    calls come from many callers), so two events a few event-time seconds apart can arrive swapped; the
    offline engine processes them in availability order. Sorting each batch repairs the swaps that fall
    into one batch; a swap across batches is handled as a late event (it lands in its windows, but rows
    computed before it arrived do not see it). Feedback messages are handed to ``on_feedback`` first:
    they only count from their own effective time, so their place in the batch does not matter.
    ``arrival`` (a histogram child) observes each pack's age since ingest.
    """
    decoded: list[tuple[Any, dict[str, Any]]] = []
    now = time.time()
    for value in batch:
        envelopes = unpack(value)
        if arrival is not None and envelopes and (t_s := envelopes[0].get("t")):
            arrival.observe(max(0.0, now - t_s))  # once per pack: per-hop latency at no per-event cost
        for envelope in envelopes:
            if "f" in envelope:
                if on_feedback is not None:
                    on_feedback(Feedback.from_envelope(envelope))
                continue
            wire = envelope["e"]
            # Validated at ingest, so trusted here; a dict is a record an older worker wrote (the raw contract
            # JSON) still on the hop after an upgrade, and is validated again.
            decoded.append((from_wire(wire) if type(wire) is list else decode_obj(wire), envelope))
    decoded.sort(key=lambda pair: available_at(pair[0]))
    return decoded


class Agents:
    """The agents' bodies and what they share; :func:`streams.worker.build_worker` registers them."""

    log = log

    def __init__(
        self,
        *,
        settings: Settings,
        live_model: LiveModel,
        shadow_model: ShadowModel,
        caller_states: StateTable,
        subscriber_states: StateTable,
        to_callers: BatchSender,
        to_subscribers: BatchSender,
        to_explain: BatchSender,
        send_dead_letter: DeadLetterSender,
        feature_topic: Any,
    ) -> None:
        self.settings = settings
        self.live_model = live_model
        self.shadow_model = shadow_model
        self.caller_states = caller_states
        self.subscriber_states = subscriber_states
        self.to_callers = to_callers
        self.to_subscribers = to_subscribers
        self.to_explain = to_explain
        self._send_dead_letter = send_dead_letter
        self.feature_topic = feature_topic
        self.alerting: AlertingRuntime | None = None  # set when the worker has started it
        self.watermark_ms = 0  # the newest event time this worker has scored
        self.budget = LiveBudget(settings)  # the thresholds each level decides with, following outcomes
        # Open calls' timers (``features.timers``), per partition of the subscriber topic: its due ticks (built
        # from the table when the partition is first met), its event time, and when (wall clock) it last had a
        # call record. The partition's clock is its call records' event time, not every kind's: the records come
        # on a topic of their own, and a transfer or a connect read ahead of them (a replay, a late records feed)
        # would otherwise tick a call whose end is merely still on the wire.
        self._partitions = list(range(settings.partitions))
        self._tick_index: dict[int, TickIndex] = {}
        self._tick_watermark: dict[int, int] = {}
        self._tick_seen_s: dict[int, float] = {}
        self._tick_lock = asyncio.Lock()  # a batch of ``score`` and the idle ticks never interleave
        # Alerts this worker's ``score`` sent on the hop that its ``explain`` has not handled yet, per subscriber:
        # a hold is issued straight from ``score`` only for a subscriber with none (its plan of the case to join
        # must know every decision to be recorded before it). Counts of alerts another worker handles stay up,
        # which only leaves those subscribers' holds to ``explain``.
        self._unhandled: dict[str, int] = {}
        self._early_holds: set[asyncio.Task[None]] = set()  # issues in flight (kept referenced until done)

    async def dead_letter(self, raw: bytes, exc: InvalidEvent, source: str, partition: int, offset: int) -> None:
        """Publish a rejected message with why it was rejected; count it."""
        DEAD_LETTERS.labels(reason=exc.reason).inc()
        await self._send_dead_letter(raw, exc, source, partition, offset)

    async def ingest(self, stream: Any) -> None:
        """Validate raw input; route calls to their caller's partition and transfers to the payee's.

        Stateless, so it works in batches: one produce call per partition and batch instead of one per event.
        Events are acknowledged after their batch is queued; Faust flushes the producer before it commits.
        """
        settings = self.settings
        async for events in stream.take_events(settings.score_batch_max, within=settings.score_batch_wait_s):
            out: list[tuple[bytes, bytes]] = []
            counts: dict[tuple[str, str], int] = {}
            for event in events:
                message = event.message
                raw: bytes = event.value if event.value is not None else b""
                routed = route_raw(raw, settings.max_event_bytes, message.timestamp)
                if isinstance(routed, Rejected):
                    await self.dead_letter(raw, routed.error, message.topic, message.partition, message.offset)
                    log.warning("dead letter", extra={"reason": routed.error.reason, "topic": message.topic})
                    continue
                if isinstance(routed, Ignored):
                    _child(EVENTS_IGNORED, routed.schema).inc()
                    continue
                counts[(message.topic, routed.schema)] = counts.get((message.topic, routed.schema), 0) + 1
                if isinstance(routed, Fanout):
                    out += routed.messages
                else:
                    out.append((routed.key, routed.envelope))
            for (topic, kind), n in counts.items():
                _child(EVENTS_CONSUMED, topic, kind).inc(n)
            await self.to_callers.send_many(out)

    def _take_feedback(self, fb: Feedback, touched: dict[str, KeyState]) -> None:
        """Queue feedback on the caller or payee state it names (a repeat is dropped and counted)."""
        state = self.caller_states.current(fb.key, touched, key_state_type(fb.key))
        if feedback_stage(state, fb):
            touched[fb.key] = state
        else:
            _feedback_duplicates.inc()

    async def callers(self, stream: Any) -> None:
        """Update the calling number's (or payee's) rolling state and pass its risk on to the subscriber's partition.

        Works in batches so that a busy number (a ring line, a call centre) is written to the changelog
        once per batch rather than once per call: its state is the largest there is.
        """
        settings = self.settings
        async for batch in stream.take(settings.score_batch_max, within=settings.score_batch_wait_s):
            touched: dict[str, KeyState] = {}
            out: list[tuple[bytes, bytes]] = []
            take_feedback = functools.partial(self._take_feedback, touched=touched)
            for event, envelope in _in_arrival_order(batch, take_feedback, _callers_arrival):
                steps = steps_for(event)
                if steps is None:
                    continue  # a kind the features do not use (ingest forwards only kinds with a route)
                key = steps.key_of(event)
                state = self.caller_states.current(key, touched, key_state_type(key))
                snap = steps.key_stage(state, event)
                if snap is None:
                    _key_duplicates[steps.snapshot_type].inc()
                    continue
                if steps.writes_key_state:  # a connect reads its caller: no changelog write for it
                    touched[key] = state
                envelope["s"] = snap.to_list()
                out.append((event.subscriber.encode(), orjson.dumps(envelope)))
            await self.caller_states.write(touched, after=await self.to_subscribers.send_many(out))

    async def _wait_for_model(self) -> Any:
        # Readiness keeps traffic away until a model is loaded; if one vanishes, wait rather than drop.
        while self.live_model.scorer is None:
            await asyncio.sleep(0.5)
        return self.live_model.scorer

    async def score(self, stream: Any) -> None:
        """Update subscriber state per event, score in micro-batches, queue risky rows for ``explain``.

        ``take()`` batches the model call (one predict per batch costs ~1 us/row against ~40 us for one
        row); the tables use the producer's partitioner so they can be written inside ``take()`` (#497),
        and events are acknowledged only after their batch is scored, so at-least-once still holds.
        """
        settings = self.settings
        async for batch in stream.take(settings.score_batch_max, within=settings.score_batch_wait_s):
            async with self._tick_lock:
                await self._score_batch(batch)

    async def _score_batch(self, batch: list[bytes]) -> None:
        rows: list[FeatureRow] = []
        ingest_s: list[float | None] = []
        transfers: list[TransferRef | None] = []  # per row: what a hold of it would name
        occasions: list[str] = []  # per row: the call or transfer it belongs to
        touched: dict[str, SubscriberState] = {}
        feedback: list[Feedback] = []
        now_s = time.monotonic()
        for event, envelope in _in_arrival_order(batch, arrival=_score_arrival):
            steps = steps_for(event)
            if steps is None:
                continue
            # The subscriber's partition (records of this topic are keyed by it): a call record moves its clock,
            # firing the partition's ticks due by then first.
            partition = partition_of(event.subscriber.encode(), self._partitions)
            at = available_at(event)
            if isinstance(event, CallEvent):
                self._tick_seen_s[partition] = now_s
                due = self._fire_ticks(partition, at, touched)
                self._add_ticks(due, rows, ingest_s, transfers, occasions)
            # "c"/"p": a caller's or payee's snapshot as an older worker wrote it (before the one "s").
            wire_snap = envelope.get("s") or envelope.get("c") or envelope.get("p")
            snap = steps.snapshot_type.from_list(wire_snap) if wire_snap else None
            state = self.subscriber_states.current(event.subscriber, touched, SubscriberState)
            if state.open_calls:  # its own calls' marks passed by this event's time come first, as offline
                own = self._ticks_of(partition).fire_own(event.subscriber, state, at)
                if own:
                    touched[event.subscriber] = state
                    TICKS_FIRED.inc(len(own))
                    self._add_ticks(own, rows, ingest_s, transfers, occasions)
            out = steps.subscriber_stage(state, event, snap)
            if out is None:
                _subscriber_duplicates.inc()
                continue
            row, raised = out
            feedback += raised
            touched[event.subscriber] = state
            if state.open_calls:
                self._ticks_of(partition).schedule(event.subscriber, state)
            rows.append(row)
            ingest_s.append(envelope.get("t"))
            transfers.append(_transfer_ref(event, envelope.get("t")))
            occasions.append(occasion_of(event))
        if rows:  # else nothing new (``touched`` is empty too)
            await self._decide(rows, ingest_s, transfers, occasions, touched, feedback)

    @staticmethod
    def _add_ticks(
        ticks: list[FeatureRow],
        rows: list[FeatureRow],
        ingest_s: list[float | None],
        transfers: list[TransferRef | None],
        occasions: list[str],
    ) -> None:
        for tick in ticks:
            rows.append(tick)
            ingest_s.append(None)
            transfers.append(None)
            occasions.append(tick_call_id(tick.event_id))

    def _ticks_of(self, partition: int) -> TickIndex:
        """The partition's due ticks; first met since start or assignment, rebuilt from the stored states."""
        index = self._tick_index.get(partition)
        if index is None:
            index = self._tick_index[partition] = TickIndex()
            index.rebuild(self.subscriber_states.with_open_calls(partition, self._partitions))
        return index

    def _fire_ticks(self, partition: int, until_ms: int, touched: dict[str, SubscriberState]) -> list[FeatureRow]:
        """Move the partition's event time to ``until_ms`` (never back); the rows of the ticks due by then."""
        watermark = max(self._tick_watermark.get(partition, 0), until_ms)
        self._tick_watermark[partition] = watermark
        index = self._ticks_of(partition)
        due = index.next_due()
        if due is None or due > watermark:
            return []
        states = self.subscriber_states

        def state_of(subscriber: str) -> SubscriberState:
            state: SubscriberState = states.current(subscriber, touched, SubscriberState)
            return state

        rows: list[FeatureRow] = []
        for row, state in index.fire_due(watermark, state_of):
            touched[row.subscriber] = state
            rows.append(row)
        if rows:
            TICKS_FIRED.inc(len(rows))
        return rows

    def forget_partitions(self, partitions: Iterable[int]) -> None:
        """Drop the timers of partitions taken away: met again, they are rebuilt from the recovered table."""
        for partition in partitions:
            self._tick_index.pop(partition, None)
            self._tick_watermark.pop(partition, None)
            self._tick_seen_s.pop(partition, None)

    async def fire_idle_ticks(self, assigned: Iterable[int]) -> int:
        """Fire the due ticks of partitions without an event for ``tick_idle_s`` (wall clock); how many fired.

        The one place wall time touches the timers, and only partitions without a call record for that long:
        their event time is moved to the newest this worker has scored (never back), as offline.
        """
        if self.live_model.scorer is None:
            return 0  # nothing could score them; they stay due
        async with self._tick_lock:
            top = self.watermark_ms
            now_s = time.monotonic()
            touched: dict[str, SubscriberState] = {}
            rows: list[FeatureRow] = []
            for partition in assigned:
                seen = self._tick_seen_s.setdefault(partition, now_s)  # a partition never met idles from now
                if top and now_s - seen >= self.settings.tick_idle_s:
                    rows += self._fire_ticks(partition, top, touched)
            if rows:
                occasions = [tick_call_id(row.event_id) for row in rows]
                await self._decide(rows, [None] * len(rows), [None] * len(rows), occasions, touched, [])
            return len(rows)

    async def _decide(
        self,
        rows: list[FeatureRow],
        ingest_s: list[float | None],
        transfers: list[TransferRef | None],
        occasions: list[str],
        touched: dict[str, SubscriberState],
        feedback: list[Feedback],
    ) -> None:
        """Score rows, queue the risky ones for ``explain``, then send the feedback and write the states."""
        settings = self.settings
        published: list[Any] = []
        if settings.publish_features:
            for row in rows:
                key = row.subscriber.encode()
                published.append(await self.feature_topic.send(key=key, value=encode_row(row)))
        scorer = self.live_model.scorer or await self._wait_for_model()
        started = time.perf_counter()
        risks = scorer.score([r.values for r in rows])
        SCORE_SECONDS.observe(time.perf_counter() - started)
        SCORE_BATCH.observe(len(rows))
        self.watermark_ms = max(self.watermark_ms, max(r.avail_ms for r in rows))
        now = time.time()
        pending: list[tuple[bytes, bytes]] = []
        alerts: list[PendingAlert] = []
        thresholds = self.budget.thresholds(scorer)
        hold_at = self.budget.hold_threshold(scorer)
        risk_list = risks.tolist()
        decided = decide_levels(risk_list, thresholds, [r.schema for r in rows])
        batch = zip(rows, risk_list, decided, ingest_s, transfers, occasions, strict=True)
        for row, risk, level, t_s, transfer, occasion in batch:
            self.budget.observe(scorer, row.event_id, row.subscriber, row.avail_ms, risk, row.schema)
            _child(EVENTS_SCORED, row.schema).inc()
            _child(DECISIONS, str(level)).inc()
            if t_s:
                EVENT_TO_DECISION.observe(max(0.0, now - t_s))
            EVENT_TIME_LAG.observe(max(0.0, now - row.avail_ms / 1000))
            if level:
                if row.values[_ON_CALL] >= 1:
                    _child(IN_CALL_ALERTS, str(level)).inc()
                # A hold rides on an alert: a transfer below level 1 makes no case for its hold to belong to.
                held = transfer if transfer is not None and hold_at is not None and risk >= hold_at else None
                reached = thresholds[level - 1] if level - 1 < len(thresholds) else None
                alert = PendingAlert(row, risk, level, scorer.version, now, held, occasion, reached)
                pending.append((row.subscriber.encode(), encode_pending(alert)))
                alerts.append(alert)
        # Explaining and acting on the alerts is the ``explain`` agent's work, so it does not hold up scoring.
        early = self._early_hold_plans(alerts)
        published += await self.to_explain.send_many(pending)
        if self.shadow_model.scorer is not None:
            self._score_shadow(self.shadow_model.scorer, rows, decided)
        # Feedback before the state write: a crash in between re-sends it, and its receiver drops repeats.
        await self.to_callers.send_many([(fb.key.encode(), orjson.dumps(fb.to_envelope())) for fb in feedback])
        # One changelog write per key and batch, before the batch's events are acknowledged, and only after
        # their feature rows and pending alerts are on the broker. The state goes straight to the producer's
        # accumulator, ahead of Faust's send buffer, so waiting on the rows is what keeps it behind them.
        await self.subscriber_states.write(touched, after=published)
        # The alerts are on the broker now: their holds may go out ahead of the hop (``explain`` issues any not
        # issued here, e.g. after a crash in between, and finds the rest).
        self._start_early_holds(early)

    def _early_hold_plans(self, alerts: list[PendingAlert]) -> list[tuple[Decision, list[Decision]]]:
        """Each held alert's decision with the same subscriber's alerts before it in the batch, for subscribers
        with no alert of an earlier batch still unhandled; then counts the batch's alerts as unhandled."""
        plans = _hold_plans(alerts, lambda subscriber: not self._unhandled.get(subscriber))
        if len(self._unhandled) > _UNHANDLED_KEYS_MAX:
            # Bounded: counts of alerts another worker handled never come down. Forgetting them risks only a hold
            # planned under the wrong case, which its handling moves (``fw_holds_total{event="relinked"}``).
            self._unhandled.clear()
        for alert in alerts:
            self._unhandled[alert.row.subscriber] = self._unhandled.get(alert.row.subscriber, 0) + 1
        return plans

    def _start_early_holds(self, plans: list[tuple[Decision, list[Decision]]]) -> None:
        """Issue these holds in the background (``AlertingRuntime.issue_hold``): scoring does not wait on Redis."""
        alerting = self.alerting
        if alerting is None or not plans or alerting.retrying or len(self._early_holds) >= _EARLY_HOLDS_MAX:
            return  # alerting not up, Redis away, or a backlog of issues: ``explain`` issues them instead

        async def issue() -> None:
            for decision, earlier in plans:
                await alerting.issue_hold(decision, earlier)

        task = asyncio.create_task(issue(), name="early-holds")
        self._early_holds.add(task)
        task.add_done_callback(self._early_holds.discard)

    async def finish_early_holds(self, timeout_s: float = 5.0) -> int:
        """Wait (bounded) for the holds being issued in the background as the worker stops; returns how many
        were left unfinished (cancelled: ``explain`` issues those after a restart, from the hop)."""
        pending = set(self._early_holds)
        if not pending:
            return 0
        _, left = await asyncio.wait(pending, timeout=timeout_s)
        for task in left:
            task.cancel()
        if left:
            await asyncio.wait(left)
        return len(left)

    def _handled(self, alert: PendingAlert) -> None:
        """``explain`` is done with an alert: one fewer unhandled for its subscriber."""
        subscriber = alert.row.subscriber
        left = self._unhandled.get(subscriber, 0) - 1
        if left > 0:
            self._unhandled[subscriber] = left
        else:
            self._unhandled.pop(subscriber, None)

    async def explain(self, stream: Any) -> None:
        """Explain a batch's alerts (SHAP top features as sentences) and hand them to alerting, in event order."""
        settings = self.settings
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
                    await self.dead_letter(raw, reason, message.topic, message.partition, message.offset)
                    log.error("unreadable pending alert", extra={"error": str(exc)})
            log.debug("pending alerts taken", extra={"sources": offsets})
            if not alerts:
                continue
            await self._wait_for_model()  # returns at once when a model is loaded
            alerting = await self._wait_for_alerting()
            order = holds_first(alerts)
            sequence = [i for group in order for i in group]
            done = 0
            for group in order:
                started = time.perf_counter()
                # SHAP runs in a thread meanwhile: the holds go out first, as the bank waits for each one.
                explaining = asyncio.ensure_future(self._contributions([alerts[i] for i in group]))
                await self._issue_holds(alerting, [alerts[i] for i in group])
                contributions = await explaining
                explained = time.perf_counter()
                EXPLAIN_SECONDS.observe(explained - started)
                for i, contrib in zip(group, contributions, strict=True):
                    try:
                        await self._alert(alerting, alerts[i], contrib, offsets[i])
                        self._handled(alerts[i])
                    except AlertingStopped:
                        # Stopping while Redis is away: these are about to be acknowledged unhandled, so they go
                        # back on the hop first (durable there; the next worker handles them).
                        rest = [(alerts[j].row.subscriber.encode(), encode_pending(alerts[j])) for j in sequence[done:]]
                        await asyncio.gather(*await self.to_explain.send_many(rest))
                        log.warning("stopped while redis was away: alerts put back", extra={"alerts": len(rest)})
                        return
                    done += 1
                ALERT_HANDOFF_SECONDS.observe(time.perf_counter() - explained)

    async def _issue_holds(self, alerting: AlertingRuntime, group: list[PendingAlert]) -> None:
        """Issue the holds of a group's alerts ahead of their explanation and case (``AlertingRuntime.issue_hold``).

        Most went out from ``score`` already (this finds them); the rest (a subscriber with alerts still waiting
        here, a restart in between, Redis away then) go now. Each names the case it will join after the same
        subscriber's alerts before it in the group; the alert's handling finds its hold issued (at least once as
        before: a hold not issued here is issued then).
        """
        for decision, earlier in _hold_plans(group):
            await alerting.issue_hold(decision, earlier)

    async def _wait_for_alerting(self) -> AlertingRuntime:
        # Started by a task as the worker starts; an alert taken before that waits for it.
        while self.alerting is None:
            await asyncio.sleep(0.1)
        return self.alerting

    async def _contributions(self, alerts: list[PendingAlert]) -> list[Any]:
        """SHAP contributions of each alert's row under the model version that scored it (when still loaded).

        One call per version (LightGBM's per-call cost dominated one row's), in a thread: LightGBM releases
        the GIL, so the other agents keep the event loop busy meanwhile.
        """
        by_version: dict[str, list[int]] = {}
        for i, alert in enumerate(alerts):
            by_version.setdefault(alert.model_version, []).append(i)
        out: list[Any] = [None] * len(alerts)
        for version, idx in by_version.items():
            scorer = self.live_model.scorer_of(version)
            assert scorer is not None  # the caller waited for a model
            if scorer.version != version:
                log.warning("alerts explained by a newer model", extra={"version": version, "alerts": len(idx)})
            contrib = await asyncio.to_thread(scorer.contributions_many, [alerts[i].row.values for i in idx])
            for i, c in zip(idx, contrib, strict=True):
                out[i] = c
        return out

    def _score_shadow(self, shadow: Any, rows: list[FeatureRow], live_levels: list[int]) -> None:
        """Score the batch with the shadow model; log where it would alert or disagree, never act. Its scores
        beside the live levels are kept for its handover, should it be promoted (``streams.budget``)."""
        risks = shadow.score([r.values for r in rows])
        for row, risk, live_level in zip(rows, risks.tolist(), live_levels, strict=True):
            self.budget.observe_shadow(shadow, row.event_id, row.avail_ms, risk, live_level)
            level = shadow.level(risk)
            SHADOW_DECISIONS.labels(level=str(level)).inc()
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

    async def _alert(self, alerting: AlertingRuntime, alert: PendingAlert, contributions: Any, source: str) -> None:
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
            await alerting.handle(decision)
        except AlertingStopped:
            raise
        except Exception as exc:
            ALERT_ERRORS.labels(error=type(exc).__name__).inc()
            log.exception("alerting failed", extra={"event_id": row.event_id})
