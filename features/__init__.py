"""Features: per-key rolling state and the feature vector, one code path for training and serving.

Inside: ``registry`` (every feature once: name, block, sentence; ``FEATURES_HASH``), ``params`` (every constant
that shapes a value), ``steps`` (the one step order, for the offline ``FeatureEngine`` and the stream agents),
``state``/``windows`` (per-key rolling state), ``vector`` (the row) and ``timers`` (open calls re-scored in
event time). Imports only the ground floor
(``core``); other packages import from here, not from the modules.
"""

from features.clock import DAY_MS, HOUR_MS, MINUTE_MS, WINDOW_NAMES, WINDOW_SPANS_MS
from features.params import PARAMETERS
from features.pipeline import FeatureEngine, in_arrival_order
from features.registry import FEATURES, PARAMETERS_JSON, Feature, describe_change
from features.state import (
    CHANNEL_CODES,
    KIND_CODES,
    PAYEE_AGE_CAP_S,
    PAYEE_PREFIX,
    CallerSnapshot,
    CallerState,
    Feedback,
    PayeeSnapshot,
    PayeeState,
    SubscriberState,
    payee_key,
    state_from_obj,
)
from features.steps import (
    KeySnapshot,
    KeyState,
    feedback_of,
    feedback_stage,
    key_of,
    key_stage,
    key_state_type,
    report_feedback,
    snapshot_type,
    steps_for,
    subscriber_stage,
)
from features.timers import TICK_SCHEMA, TickIndex, tick_call_id
from features.vector import (
    CATEGORICAL_FEATURES,
    FEATURE_INDEX,
    FEATURE_NAMES,
    FEATURES_HASH,
    FeatureRow,
    apply_feedback,
    available_at,
    caller_step,
    encode_row,
    json_values,
    payee_step,
    subscriber_step,
    transfer_feedback,
)

__all__ = [
    "CATEGORICAL_FEATURES",
    "CHANNEL_CODES",
    "DAY_MS",
    "FEATURES",
    "FEATURES_HASH",
    "FEATURE_INDEX",
    "FEATURE_NAMES",
    "HOUR_MS",
    "KIND_CODES",
    "MINUTE_MS",
    "PARAMETERS",
    "PARAMETERS_JSON",
    "PAYEE_AGE_CAP_S",
    "PAYEE_PREFIX",
    "TICK_SCHEMA",
    "WINDOW_NAMES",
    "WINDOW_SPANS_MS",
    "CallerSnapshot",
    "CallerState",
    "Feature",
    "FeatureEngine",
    "FeatureRow",
    "Feedback",
    "KeySnapshot",
    "KeyState",
    "PayeeSnapshot",
    "PayeeState",
    "SubscriberState",
    "TickIndex",
    "apply_feedback",
    "available_at",
    "caller_step",
    "describe_change",
    "encode_row",
    "feedback_of",
    "feedback_stage",
    "in_arrival_order",
    "json_values",
    "key_of",
    "key_stage",
    "key_state_type",
    "payee_key",
    "payee_step",
    "report_feedback",
    "snapshot_type",
    "state_from_obj",
    "steps_for",
    "subscriber_stage",
    "subscriber_step",
    "tick_call_id",
    "transfer_feedback",
]
