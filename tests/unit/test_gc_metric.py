"""GC pauses are timed into a histogram by generation."""

from __future__ import annotations

import gc

import pytest
from prometheus_client import REGISTRY

from streams.metrics import watch_gc_pauses

pytestmark = pytest.mark.unit


def _count(generation: str) -> float:
    return REGISTRY.get_sample_value("fw_gc_pause_seconds_count", {"generation": generation}) or 0.0


def test_full_collections_are_timed_once_each() -> None:
    watch_gc_pauses()
    watch_gc_pauses()  # idempotent: one callback, not two
    before = _count("2")
    gc.collect(2)
    gc.collect(2)
    assert _count("2") == before + 2
    assert (REGISTRY.get_sample_value("fw_gc_pause_seconds_sum", {"generation": "2"}) or 0.0) > 0.0
