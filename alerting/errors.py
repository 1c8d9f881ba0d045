"""The one exception tree of the alerting package."""

from __future__ import annotations


class AlertingError(Exception):
    """Base of every error raised by the alerting package."""


class ConfigurationError(AlertingError):
    """A setting the alerting path needs is missing or unusable."""


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
