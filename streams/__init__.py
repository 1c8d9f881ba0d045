"""Streams: the worker that wires ingest, features, models and alerting on Kafka topics, and replay.

Other packages import from here, not from the modules. Names load on first use, so ``fraudwatch replay``
does not import the models and alerting that only the worker needs. ``replay_events`` is
``streams.replay.replay`` (a package attribute may not share its name with a submodule).
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

__all__ = [
    "ReplayStats",
    "Routed",
    "SeedStats",
    "StreamWorker",
    "TopicPublisher",
    "bootstrap",
    "build_worker",
    "changelog_topic",
    "encode_state",
    "ensure_topics",
    "internal_topic",
    "load_lines",
    "refit_event_ms",
    "replay_events",
    "seed_follower",
    "seed_tables",
    "topic_names",
    "watch_gc_pauses",
]

_HOME = {
    "ReplayStats": "streams.replay",
    "Routed": "streams.replay",
    "load_lines": "streams.replay",
    "replay_events": "streams.replay",
    "StreamWorker": "streams.worker",
    "build_worker": "streams.worker",
    "bootstrap": "streams.topics",
    "ensure_topics": "streams.topics",
    "internal_topic": "streams.topics",
    "topic_names": "streams.topics",
    "watch_gc_pauses": "streams.metrics",
    "SeedStats": "streams.seed",
    "changelog_topic": "streams.topics",
    "seed_tables": "streams.seed",
    "refit_event_ms": "streams.budget",
    "seed_follower": "streams.budget",
    "TopicPublisher": "streams.publisher",
    "encode_state": "streams.codecs",
}


def __getattr__(name: str) -> Any:
    home = _HOME.get(name)
    if home is None:
        raise AttributeError(f"module 'streams' has no attribute {name!r}")
    return getattr(import_module(home), "replay" if name == "replay_events" else name)
