"""Every Redis key and stream name the alerting package uses, in one place."""

from __future__ import annotations

RESPONDER_IDS = "fw:responders"  # set of registered responder ids
STATS = "fw:stats"  # hash of counters: cases, warnings, tasks:L2, tasks:L3, delivered, delivery_failed
OUTBOX = "fw:outbox"  # stream of tasks awaiting delivery
OUTBOX_DEAD = "fw:outbox:dead"  # stream of tasks that could not be delivered
OUTBOX_GROUP = "delivery"
WARNINGS = "fw:warnings"  # stream of level-1 warning records (for the SMS/in-app sender)
TASKS_OPEN = "fw:tasks:open"  # sorted set: task id -> wall ms it was opened; resolved tasks leave it
TASKS_CLOSED = "fw:tasks:closed"  # sorted set: task id -> wall ms it was resolved (the console's closed-case search)
TASKS_AWAITING_ACK = "fw:tasks:awaiting-ack"  # sorted set: task id -> wall ms of its (re)assignment
LABELS = "fw:labels"  # stream of outcome labels of resolved tasks (for training)
AUDIT = "fw:audit"  # stream of who viewed or changed what in the console
HOLDS_OUTBOX = "fw:holds:outbox"  # stream of hold.v1 messages awaiting the holds topic and the bank
HOLDS_OUTBOX_DEAD = "fw:holds:outbox:dead"  # stream of hold.v1 messages that could not be delivered
HOLDS_ACTIVE = "fw:holds:active"  # sorted set: hold id -> expires_ms, while the hold is held
CONSOLE_CHANNEL = "fw:console"  # pub/sub channel of changes the console shows live (ids and states only)


def responder(responder_id: str) -> str:
    """Hash of one responder's fields."""
    return f"fw:responder:{responder_id}"


def responders_geo(kind: str) -> str:
    """Geo set of the responders of one kind."""
    return f"fw:responders:geo:{kind}"


def case(case_key: str) -> str:
    """Hash of one case (one subscriber episode)."""
    return f"fw:case:{case_key}"


def case_decisions(case_key: str) -> str:
    """List of the scored events folded into one case (JSON, oldest first; the newest CASE_DECISIONS_KEPT)."""
    return f"fw:case-decisions:{case_key}"


def case_open(subscriber_pseudonym: str) -> str:
    """Hash pointing at the subscriber's latest case: case_key, start_ms, end_ms."""
    return f"fw:case-open:{subscriber_pseudonym}"


def task(task_id: str) -> str:
    """String holding the task.v1 JSON."""
    return f"fw:task:{task_id}"


def task_events(task_id: str) -> str:
    """List of the task's state transitions (JSON, oldest first)."""
    return f"fw:task-events:{task_id}"


def task_state(task_id: str) -> str:
    """Hash of the task's lifecycle: state, responder_id, since_ms, opened_ms, tried, level, case_key."""
    return f"fw:task-state:{task_id}"


def hold(hold_id: str) -> str:
    """Hash of one payment hold: state, the hold.v1 message it began with, its ending, times."""
    return f"fw:hold:{hold_id}"


def hold_events(hold_id: str) -> str:
    """List of the hold's messages' deliveries and failures (JSON, oldest first)."""
    return f"fw:hold-events:{hold_id}"


def case_holds(case_key: str) -> str:
    """Set of the hold ids of one case."""
    return f"fw:case-holds:{case_key}"


def text(value: bytes | str | None) -> str | None:
    """A Redis reply as ``str`` whether or not the client decodes responses."""
    if value is None or isinstance(value, str):
        return value
    return value.decode()
