"""Features: per-key rolling state and the feature vector, one code path for training and serving.

Imports only the ground floor (``core``). Other packages import from here, not from the modules.
"""

from features.clock import DAY_MS, HOUR_MS, MINUTE_MS, WINDOW_NAMES, WINDOW_SPANS_MS
from features.pipeline import FeatureEngine, in_arrival_order
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
    "FEATURES_HASH",
    "FEATURE_INDEX",
    "FEATURE_NAMES",
    "HOUR_MS",
    "KIND_CODES",
    "MINUTE_MS",
    "PAYEE_AGE_CAP_S",
    "PAYEE_PREFIX",
    "WINDOW_NAMES",
    "WINDOW_SPANS_MS",
    "CallerSnapshot",
    "CallerState",
    "FeatureEngine",
    "FeatureRow",
    "Feedback",
    "PayeeSnapshot",
    "PayeeState",
    "SubscriberState",
    "apply_feedback",
    "available_at",
    "caller_step",
    "encode_row",
    "in_arrival_order",
    "json_values",
    "payee_key",
    "payee_step",
    "state_from_obj",
    "subscriber_step",
    "transfer_feedback",
]
