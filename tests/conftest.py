"""Shared fixtures: real embedded services and a small trained model, built once per session."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from core.settings import Settings
from sandbox.services import RunningService, start_redis, start_tansu
from sandbox.simulate import CityConfig, simulate, write_city

# Workers the tests start decide with the model's own thresholds, so a disturbed run must decide exactly as an
# undisturbed one; the followed thresholds have their own tests (test_followed_thresholds, test_live_budget).
os.environ.setdefault("FW_BUDGET_FOLLOW", "false")


@pytest.fixture(scope="module")
def tansu() -> Iterator[RunningService]:
    """A real Kafka-API broker (Tansu) on a free loopback port, fresh per test module: the input topics
    are shared by every app id, so a module must not see another module's events."""
    service = start_tansu()
    yield service
    service.stop()


@pytest.fixture(scope="session")
def redis_service() -> Iterator[RunningService]:
    """A real redis-server on a free loopback port."""
    service = start_redis()
    yield service
    service.stop()


@pytest.fixture(scope="session")
def trained_data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data folder whose registry holds one promoted model trained on a small simulated city."""
    from sandbox.training import train_from_files

    data = tmp_path_factory.mktemp("data")
    city = simulate(CityConfig(subscribers=6000, days=3, seed=3, victims_per_10k_per_day=60))
    paths = write_city(city, data / "train-city")
    # One booster, held-out-day thresholds: the tests need a working model, not the robust thresholds.
    train_from_files(
        paths["events"], paths["cases"], Settings(data_dir=data), promote=True, n_models=1, threshold_folds=0
    )
    return data
