"""Every error this project raises, under one root.

    FraudwatchError
    ├── InvalidEvent ............. an input event breaks the contract (``reason`` goes to the dead-letter topic)
    ├── MalformedPendingAlert .... a pending-alerts record this code did not write
    ├── PatchVersionError ........ the installed Faust/aiokafka is not a version the stream patches were checked for
    ├── ServiceError ............. an embedded service (broker, Redis) could not be found or did not come up
    ├── StateNotEmpty ............ a state seed was refused: the feature tables' changelogs already hold state
    ├── ModelError
    │   ├── NoModel .............. the registry holds no (promoted) model
    │   ├── UnknownVersion ....... a version named by the user is not in the registry
    │   ├── FeatureMismatch ...... a model was trained on other features (or feature parameters) than served
    │   └── TrainingDataError .... the training data cannot produce a model
    └── AlertingError
        ├── ConfigurationError
        │   └── InvalidTokensFile
        ├── InvalidDecision, InvalidResponder, InvalidTransition   (also ValueError)
        ├── UnknownResponder, UnknownTask, UnknownHold             (also LookupError)
        ├── NoResponderAvailable, CaseContention, TransitionContention
        ├── DeliveryFailed ....... one delivery attempt failed; ``retryable`` says whether to try again
        ├── LabelPublishFailed ... the labels topic refused an outcome label (the publisher retries it)
        ├── AlertingStopped ...... the worker stopped while a decision waited for Redis
        └── ConsoleError ......... a console request error; ``status`` is its HTTP status
            ├── BadRequest (400), AuthenticationRequired (401), PermissionDenied (403)
            └── RateLimited (429)

The CLI turns any of them into one line and exit status 1 (see ``fraudwatch.cli``).
"""

from __future__ import annotations

__all__ = [
    "AlertingError",
    "AlertingStopped",
    "AuthenticationRequired",
    "BadRequest",
    "CaseContention",
    "ConfigurationError",
    "ConsoleError",
    "DeliveryFailed",
    "FeatureMismatch",
    "FraudwatchError",
    "InvalidDecision",
    "InvalidEvent",
    "InvalidResponder",
    "InvalidTokensFile",
    "InvalidTransition",
    "LabelPublishFailed",
    "MalformedPendingAlert",
    "ModelError",
    "NoModel",
    "NoResponderAvailable",
    "PatchVersionError",
    "PermissionDenied",
    "RateLimited",
    "ServiceError",
    "StateNotEmpty",
    "TrainingDataError",
    "TransitionContention",
    "UnknownHold",
    "UnknownResponder",
    "UnknownTask",
    "UnknownVersion",
]


class FraudwatchError(Exception):
    """Root of every error raised by this project."""


class InvalidEvent(FraudwatchError, ValueError):
    """An event that breaks the contract; ``reason`` is a short stable code for the dead-letter topic."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


class MalformedPendingAlert(FraudwatchError, ValueError):
    """A record on the pending-alerts topic that this code did not write (or an older, incompatible one)."""


class PatchVersionError(FraudwatchError, RuntimeError):
    """The installed Faust or aiokafka is not a version the stream patches were written and checked for."""


class ServiceError(FraudwatchError, RuntimeError):
    """An embedded service could not be found or did not come up."""


class StateNotEmpty(FraudwatchError, RuntimeError):
    """A state seed was refused: the feature tables' changelogs already hold state (a running deployment's)."""


class ModelError(FraudwatchError):
    """Base of every model-layer error."""


class NoModel(ModelError):
    """The registry holds no model (or none promoted)."""


class UnknownVersion(ModelError):
    """A version named by the user is not in the registry."""


class FeatureMismatch(ModelError):
    """A model was trained on other features (or other feature parameters) than the serving code computes."""


class TrainingDataError(ModelError):
    """The training data cannot produce a model (e.g. no positive events)."""


class AlertingError(FraudwatchError):
    """Base of every error raised by the alerting package."""


class ConfigurationError(AlertingError):
    """A setting the alerting path needs is missing or unusable."""


class InvalidTokensFile(ConfigurationError):
    """The console tokens file is missing, not JSON or names an unknown role."""


class InvalidDecision(AlertingError, ValueError):
    """A decision that cannot be acted on (unknown level, score out of range, ...)."""


class InvalidResponder(AlertingError, ValueError):
    """A responder.v1 record that breaks the contract."""


class UnknownResponder(AlertingError, LookupError):
    """No responder with that id is registered."""


class NoResponderAvailable(AlertingError):
    """The responder asked for is not available to be claimed."""


class CaseContention(AlertingError):
    """A case update kept losing optimistic-lock races and gave up."""


class LabelPublishFailed(AlertingError):
    """The labels topic refused an outcome label; it stays pending in ``fw:labels`` and is retried."""


class DeliveryFailed(AlertingError):
    """One delivery attempt failed; ``retryable`` says whether another attempt may succeed."""

    def __init__(
        self,
        reason: str,
        *,
        retryable: bool,
        status_code: int | None = None,
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(reason if status_code is None else f"{reason} (HTTP {status_code})")
        self.reason = reason
        self.retryable = retryable
        self.status_code = status_code
        self.retry_after_s = retry_after_s


class UnknownTask(AlertingError, LookupError):
    """No task with that id is stored."""


class UnknownHold(AlertingError, LookupError):
    """No payment hold with that id is stored."""


class InvalidTransition(AlertingError, ValueError):
    """A task (or hold) state change the lifecycle does not allow (or a bad state/outcome name)."""


class TransitionContention(AlertingError):
    """A task transition kept losing optimistic-lock races and gave up."""


class AlertingStopped(AlertingError):
    """The worker stopped while a decision waited for Redis: it stays unacknowledged on the broker."""


class ConsoleError(AlertingError):
    """Base of the console's request errors; ``status`` is the HTTP status it maps to."""

    status = 400


class BadRequest(ConsoleError):
    """A request body or parameter the API cannot use."""


class AuthenticationRequired(ConsoleError):
    """No valid bearer token or SSE ticket."""

    status = 401


class PermissionDenied(ConsoleError):
    """The caller's role (or responder id) may not do this."""

    status = 403


class RateLimited(ConsoleError):
    """The caller's token bucket is empty; ``retry_after_s`` says when a request will be allowed again."""

    status = 429

    def __init__(self, retry_after_s: float) -> None:
        super().__init__(f"rate limited, retry after {retry_after_s:.2f} s")
        self.retry_after_s = retry_after_s
