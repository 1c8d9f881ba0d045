"""Fixtures shared by the integration tests of the alerting side: a real redis-server per module."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
import redis.asyncio as aioredis

from sandbox.services import RunningService, start_redis


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RunningService]:
    """A throw-away redis-server for one test module."""
    service = start_redis()
    yield service
    service.stop()


@pytest.fixture
async def r(redis_server: RunningService) -> AsyncIterator[aioredis.Redis]:
    """A client on an emptied database."""
    client = aioredis.Redis.from_url(redis_server.url)
    await client.flushdb()
    yield client
    await client.aclose()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """One fault table for every fault run of the session (``tests/integration/test_reliability.py``)."""
    from tests.integration.cluster import FAULT_TABLE, render_table

    if FAULT_TABLE:
        terminalreporter.section("fault table")
        terminalreporter.write_line(render_table([r.cells() for r in FAULT_TABLE]))
