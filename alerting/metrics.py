"""Prometheus metrics of the alerting path; labels carry levels and reasons, never personal data."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

ALERTS = Counter("fw_alerts_total", "Decisions handed to alerting, by level.", ["level"])
TASKS = Counter("fw_tasks_total", "Tasks created (one per case and level), by level.", ["level"])
ACTIONS_REPEATED = Counter(
    "fw_repeated_actions_total",
    "Warnings and call-centre tasks repeated for a new call or transfer of a case that had its level's action.",
    ["level"],
)
IN_CALL_ACTIONS = Counter(
    "fw_in_call_actions_total", "Warnings and tasks made while the person was on a suspect call, by level.", ["level"]
)
TASKS_DELIVERED = Counter("fw_tasks_delivered_total", "Tasks the dispatch endpoint accepted (2xx).")
DELIVERY_RETRIES = Counter("fw_delivery_retries_total", "Delivery attempts repeated after a retryable failure.")
DELIVERY_FAILURES = Counter(
    "fw_delivery_failures_total",
    "Tasks given up on and moved to the dead-letter stream, by reason.",
    ["reason"],
)
DECISION_TO_DELIVERY = Histogram(
    "fw_decision_to_delivery_seconds",
    "Wall time from the scoring decision (the outbox write for decisions without one) to the dispatch endpoint's 2xx.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300),
)

TASK_TRANSITIONS = Counter("fw_task_transitions_total", "Task lifecycle transitions, by the state reached.", ["state"])
ACK_SECONDS = Histogram(
    "fw_ack_seconds",
    "Wall time from a task's (re)assignment to its acknowledgement by the responder.",
    buckets=(1, 5, 10, 20, 30, 60, 90, 120, 180, 300, 600, 1800),
)
ESCALATIONS = Counter("fw_escalations_total", "Tasks escalated for missing their acknowledgement deadline.")
ESCALATION_POST_FAILURES = Counter(
    "fw_escalation_post_failures_total",
    "Escalation POSTs to the supervisor endpoint that failed (logged, not retried).",
)
LABEL_PUBLISH_FAILURES = Counter(
    "fw_label_publish_failures_total",
    "Attempts to publish an outcome label from fw:labels to the labels topic that failed (retried).",
)
LABELS_PUBLISHED = Counter("fw_labels_published_total", "Outcome labels published on the labels topic.")
LABEL_BACKLOG = Gauge(
    "fw_label_backlog", "Outcome labels in fw:labels not yet published on the labels topic (unread plus pending)."
)
TASKS_UNACKNOWLEDGED = Gauge(
    "fw_tasks_unacknowledged",
    "Assigned tasks waiting for their responder's acknowledgement (as the dispatch service last looked).",
)
CONSOLE_DENIED = Counter("fw_console_denied_total", "Console requests refused, by reason.", ["reason"])
RETRY_QUEUE = Gauge(
    "fw_alerting_retry_queue",
    "1 while the worker retries a decision because Redis is away (the rest wait on the pending-alerts hop).",
)

# Payment holds (hold.v1): the bank keeps an initiated transfer until told, or until the hold lapses.
HOLDS = Counter(
    "fw_holds_total",
    "Payment holds by what happened to them: issued, released, cancelled, lapsed, relinked (moved to the case "
    "its decision joined, when that was not the planned one).",
    ["event"],
)
HOLD_MESSAGES_DELIVERED = Counter(
    "fw_hold_messages_delivered_total",
    "hold.v1 messages (hold, release, cancel) published and accepted by the bank (2xx; published only, no bank URL).",
    ["action"],
)
HOLD_DELIVERY_RETRIES = Counter("fw_hold_delivery_retries_total", "hold.v1 delivery attempts repeated after a failure.")
HOLD_DELIVERY_FAILURES = Counter(
    "fw_hold_delivery_failures_total",
    "hold.v1 messages given up on and moved to the holds dead-letter stream, by reason.",
    ["reason"],
)
# The objective: a hold reaches the bank within this of the transfer's arrival (p99), or the money may be gone.
HOLD_LATENCY_OBJECTIVE_S = 0.25
HOLD_LATENCY = Histogram(
    "fw_hold_latency_seconds",
    "Wall time from the transfer's arrival on the broker (its scoring decision when unknown) to the bank's 2xx "
    f"for its hold; objective p99 <= {HOLD_LATENCY_OBJECTIVE_S} s.",
    # Fine around the objective, so a p99 near it is read from the buckets rather than guessed between 0.25 and 1.
    buckets=(
        *(0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.2, HOLD_LATENCY_OBJECTIVE_S, 0.3, 0.4, 0.5, 0.75),
        *(1, 2.5, 5, 10, 30, 60),
    ),
)
