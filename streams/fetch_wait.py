"""Shorter consumer fetch waits than Faust's hard-coded 1.5 s.

Faust builds its aiokafka consumer with ``fetch_max_wait_ms=1500`` and no setting to change it. On a
broker that answers an empty fetch only when that wait expires (Tansu does), every idle hop then costs
up to 1.5 s of latency; three hops put p50 near a second at low rates. We wrap the factory and set the
consumer's wait before it starts. Re-check this on each faust-streaming upgrade.
"""

from __future__ import annotations

from typing import Any

from faust.transport.drivers import aiokafka as faust_aiokafka

_original = faust_aiokafka.AIOKafkaConsumerThread._create_worker_consumer
_wait_ms = {"value": 1500}


def _create_worker_consumer(self: Any, transport: Any) -> Any:
    consumer = _original(self, transport)
    consumer._fetch_max_wait_ms = _wait_ms["value"]  # read by aiokafka when the consumer starts
    return consumer


def install(fetch_max_wait_ms: int) -> None:
    """Make every Faust worker consumer created from now on wait at most ``fetch_max_wait_ms``."""
    _wait_ms["value"] = fetch_max_wait_ms
    faust_aiokafka.AIOKafkaConsumerThread._create_worker_consumer = _create_worker_consumer  # type: ignore[method-assign]
