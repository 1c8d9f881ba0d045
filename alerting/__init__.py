"""Alerting: from a risk decision to a responder at the door (cases, dispatch, outbox delivery, console).

Imports only the ground floor (``core``): it is handed decisions, never features or models. Other packages
import from here, not from the modules.
"""

from alerting.console import write_demo_tokens
from alerting.decision import Decision, TransferRef
from alerting.dispatcher import Dispatcher
from alerting.holds import HoldSink
from alerting.labels import LabelPublisher
from alerting.metrics import HOLD_LATENCY_OBJECTIVE_S
from alerting.outcomes import recent_outcomes, record_history_labels, resolve_open_tasks
from alerting.responders import ResponderRegistry
from alerting.runtime import AlertingRuntime
from alerting.service import DispatchService, start_console
from alerting.webutil import answer_and_close

__all__ = [
    "HOLD_LATENCY_OBJECTIVE_S",
    "AlertingRuntime",
    "Decision",
    "DispatchService",
    "Dispatcher",
    "HoldSink",
    "LabelPublisher",
    "ResponderRegistry",
    "TransferRef",
    "answer_and_close",
    "recent_outcomes",
    "record_history_labels",
    "resolve_open_tasks",
    "start_console",
    "write_demo_tokens",
]
