"""Prometheus metrics of the stream workers (seconds, ``_total``; never a phone number in a label)."""

from __future__ import annotations

import gc
import time

from prometheus_client import Counter, Gauge, Histogram, Info

__all__ = [
    "ALERT_ERRORS",
    "ALERT_HANDOFF_SECONDS",
    "BUDGET_FOLLOWING",
    "BUDGET_REFITS",
    "BUDGET_RESIDENTS",
    "CONSUMER_LAG",
    "DEAD_LETTERS",
    "DECISIONS",
    "DUPLICATES",
    "EVENTS_CONSUMED",
    "EVENTS_IGNORED",
    "EVENTS_SCORED",
    "EVENT_TIME_LAG",
    "EVENT_TO_DECISION",
    "EXPLAIN_SECONDS",
    "FALSE_SHARE",
    "GC_PAUSE_SECONDS",
    "IN_CALL_ALERTS",
    "LEVEL_THRESHOLD",
    "LEVEL_THRESHOLD_BOUND",
    "LIVE_KEYS",
    "MODEL_INFO",
    "MODEL_LOADED",
    "PACK_ARRIVAL",
    "PRODUCE_ERRORS",
    "SCORE_BATCH",
    "SCORE_SECONDS",
    "SHADOW_DECISIONS",
    "SKIPPED_ACKS",
    "STATE_BYTES",
    "STATE_CACHE",
    "STATE_RECORDS",
    "STATE_RESTORED",
    "STATE_WRITE_WAIT",
    "TICKS_FIRED",
    "watch_gc_pauses",
]

LEVEL_THRESHOLD = Gauge("fw_level_threshold", "The score threshold each risk level decides with now", ["level"])
LEVEL_THRESHOLD_BOUND = Gauge(
    "fw_level_threshold_bound", "Lowest and highest threshold a level may follow to", ["level", "side"]
)
HOLD_THRESHOLD = Gauge(
    "fw_hold_threshold", "The score at or above which an alerting transfer is held now (followed like the levels')"
)
BUDGET_FOLLOWING = Gauge("fw_budget_following", "1 when the thresholds follow the outcomes (FW_BUDGET_FOLLOW)")
FALSE_SHARE = Gauge("fw_budget_false_share", "Share of recent visit outcomes that were false alarms (with the prior)")
BUDGET_RESIDENTS = Gauge("fw_budget_residents", "Residents the per-10k budgets are counted over")
BUDGET_REFITS = Counter("fw_budget_refits_total", "Refits of the followed thresholds", ["result"])
EVENTS_CONSUMED = Counter("fw_events_consumed_total", "Input events read from the broker", ["topic", "kind"])
DEAD_LETTERS = Counter("fw_dead_letters_total", "Events sent to the dead-letter topic", ["reason"])
DUPLICATES = Counter("fw_duplicate_events_total", "Events ignored because their event_id was seen", ["stage"])
EVENTS_SCORED = Counter("fw_events_scored_total", "Events scored by the model", ["kind"])
EVENTS_IGNORED = Counter(
    "fw_events_ignored_total", "Valid events of a kind no stage of this worker handles (a newer producer)", ["kind"]
)
TICKS_FIRED = Counter(
    "fw_call_ticks_total", "Open calls re-scored as they passed a mark of CALL_TICK_MARKS_S (event time)"
)
DECISIONS = Counter("fw_decisions_total", "Scored events by risk level (0 = no alert)", ["level"])
IN_CALL_ALERTS = Counter(
    "fw_in_call_alerts_total", "Alerts decided while the person was on a signalled call (call_start.v1)", ["level"]
)
SHADOW_DECISIONS = Counter("fw_shadow_decisions_total", "Shadow-model decisions by level (never acted on)", ["level"])
SCORE_SECONDS = Histogram(
    "fw_scoring_seconds",
    "Model scoring time per batch",
    buckets=(1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 0.1),
)
# The explain agent's two steps per alert batch, on one scale so the panel can set them side by side.
_ALERT_BATCH_BUCKETS = (1e-3, 3e-3, 1e-2, 3e-2, 0.1, 0.3, 1, 3)
EXPLAIN_SECONDS = Histogram(
    "fw_explain_seconds",
    "SHAP contributions of one batch's alerts (the reasons an alert carries)",
    buckets=_ALERT_BATCH_BUCKETS,
)
ALERT_HANDOFF_SECONDS = Histogram(
    "fw_alert_handoff_seconds",
    "Handing one batch's alerts to alerting (cases and tasks in Redis)",
    buckets=_ALERT_BATCH_BUCKETS,
)
SCORE_BATCH = Histogram("fw_scoring_batch_size", "Rows per scoring batch", buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500))
# Fine below 100 ms: the objective is p99 <= 50 ms and the benchmark reads quantiles off these buckets.
_LATENCY_BUCKETS = (
    0.001,
    0.002,
    0.003,
    0.005,
    0.0075,
    0.01,
    0.015,
    0.02,
    0.03,
    0.04,
    0.05,
    0.075,
    0.1,
    0.15,
    0.25,
    0.5,
    1,
    2.5,
    5,
    10,
    30,
    60,
)
EVENT_TO_DECISION = Histogram(
    "fw_event_to_decision_seconds",
    "From broker ingest (message timestamp) to the scoring decision",
    buckets=_LATENCY_BUCKETS,
)
PACK_ARRIVAL = Histogram(
    "fw_pack_arrival_seconds",
    "From broker ingest of a pack's first event to the pack's arrival at a stage (callers, score)",
    ["stage"],
    # Same buckets as event-to-decision, so each hop's share of that latency can be read off.
    buckets=_LATENCY_BUCKETS,
)
EVENT_TIME_LAG = Histogram(
    "fw_event_time_to_decision_seconds",
    "From when the event became known (call end, transfer start; event time) to the decision",
    buckets=(0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 3600),
)
STATE_WRITE_WAIT = Histogram(
    "fw_state_write_wait_seconds",
    "A batch's wait for the broker to acknowledge its messages before its states are written (the stage waits)",
    ["table"],
    buckets=_LATENCY_BUCKETS,
)
LIVE_KEYS = Gauge("fw_feature_state_keys", "Keys held in feature state on this worker", ["table"])
STATE_BYTES = Counter(
    "fw_state_changelog_bytes", "Bytes of feature-state records written to the tables' changelogs", ["table"]
)
STATE_RECORDS = Counter("fw_state_changelog_records", "Feature-state records written to the changelogs", ["table"])
STATE_RESTORED = Counter(
    "fw_state_restored_records",
    "Changelog records copied into the local state store (recovery and standbys; the memory store is not counted)",
    ["table"],
)
STATE_CACHE = Counter(
    "fw_state_reads", "Stored feature states read, by whether the decoded cache had them", ["table", "cache"]
)
CONSUMER_LAG = Gauge(
    "fw_consumer_lag_messages", "Messages behind the partition's high-water mark", ["topic", "partition"]
)
MODEL_INFO = Info("fw_model", "The model version this worker scores with")
MODEL_LOADED = Gauge("fw_model_loaded", "1 when a model is loaded")
SKIPPED_ACKS = Counter(
    "fw_rebalance_unacked_total",
    "Messages left unacknowledged because a rebalance took their partition mid-flight (read again later).",
)
PRODUCE_ERRORS = Counter("fw_produce_errors_total", "Forwarded messages whose delivery failed", ["topic"])
ALERT_ERRORS = Counter("fw_alerting_errors_total", "Decisions that alerting could not handle", ["error"])
GC_PAUSE_SECONDS = Histogram(
    "fw_gc_pause_seconds",
    "Cyclic garbage collections by generation: each one stops every agent for its duration",
    ["generation"],
    buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)

_gc_started = {"at": 0.0}
# Bound once: a young collection runs many times a second, and ``.labels()`` is a locked dict lookup.
_gc_pause_by_generation = [GC_PAUSE_SECONDS.labels(generation=str(g)) for g in range(3)]


def _observe_gc(phase: str, info: dict[str, int]) -> None:
    if phase == "start":
        _gc_started["at"] = time.perf_counter()
    else:
        _gc_pause_by_generation[info["generation"]].observe(time.perf_counter() - _gc_started["at"])


def watch_gc_pauses() -> None:
    """Time every cyclic GC run into ``fw_gc_pause_seconds`` (a full collection over feature state is long)."""
    if _observe_gc not in gc.callbacks:
        gc.callbacks.append(_observe_gc)
