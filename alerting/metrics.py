"""Prometheus metrics of the alerting path; labels carry levels and reasons, never personal data."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

ALERTS = Counter("fw_alerts_total", "Decisions handed to alerting, by level.", ["level"])
TASKS = Counter("fw_tasks_total", "Tasks created (one per case and level), by level.", ["level"])
TASKS_DELIVERED = Counter("fw_tasks_delivered_total", "Tasks the dispatch endpoint accepted (2xx).")
DELIVERY_RETRIES = Counter("fw_delivery_retries_total", "Delivery attempts repeated after a retryable failure.")
DELIVERY_FAILURES = Counter(
    "fw_delivery_failures_total",
    "Tasks given up on and moved to the dead-letter stream, by reason.",
    ["reason"],
)
DECISION_TO_DELIVERY = Histogram(
    "fw_decision_to_delivery_seconds",
    "Wall time from the outbox write to the 2xx answer of the dispatch endpoint.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300),
)
