"""The dispatch console: responder and dispatcher HTTP API, live events (SSE) and one browser page."""

from alerting.console.auth import DemoTokens, write_demo_tokens
from alerting.console.server import ConsoleServer, create_app, start_console

__all__ = ["ConsoleServer", "DemoTokens", "create_app", "start_console", "write_demo_tokens"]
