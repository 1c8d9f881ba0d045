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


class UnknownTask(AlertingError, LookupError):
    """No task with that id is stored."""


class InvalidTransition(AlertingError, ValueError):
    """A task state change the lifecycle does not allow (or a bad state/outcome name)."""


class TransitionContention(AlertingError):
    """A task transition kept losing optimistic-lock races and gave up."""


class ConsoleError(AlertingError):
    """Base of the console's request errors; ``status`` is the HTTP status it maps to."""

    status = 400


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


class InvalidTokensFile(ConfigurationError):
    """The console tokens file is missing, not JSON or names an unknown role."""
