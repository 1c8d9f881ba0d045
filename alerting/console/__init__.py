"""The dispatch console: responder and dispatcher HTTP API, live events (SSE) and the browser pages."""

from alerting.console.auth import DemoTokens, write_demo_tokens
from alerting.console.server import create_app

__all__ = ["DemoTokens", "create_app", "write_demo_tokens"]
