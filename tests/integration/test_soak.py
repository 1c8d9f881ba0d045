"""The soak runs end to end in its tiny mode: samples on stdout, a summary with the slopes that show a leak."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from core.settings import Settings
from sandbox.soak import SoakConfig, run_soak, slope_per_minute

pytestmark = pytest.mark.integration


def test_tiny_soak_samples_and_slopes(trained_data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    result = run_soak(Settings(data_dir=trained_data_dir), SoakConfig(minutes=0.3, rate=200, sample_s=3))
    lines = [orjson.loads(line) for line in capsys.readouterr().out.splitlines() if line.strip()]
    samples, summary = result["samples"], result["summary"]
    assert lines == [*samples, {"summary": summary}]  # one JSON line per sample, then the summary

    assert len(samples) >= 3
    scored = [s["events_scored"] for s in samples]
    assert scored == sorted(scored) and scored[-1] > scored[0] > 0
    assert all(s["rss_mb"] is not None and s["rss_mb"] > 0 for s in samples)
    assert all(s["events_sent"] <= 200 * 0.3 * 60 for s in samples)
    assert any(s["p99_ms"] is not None for s in samples)
    assert all(s["consumer_lag"] >= 0 and s["feature_state_keys"] >= 0 for s in samples)

    for key in ("rss_slope_mb_per_min", "p99_slope_ms_per_min", "rss_slope_mb_per_min_second_half"):
        assert key in summary and isinstance(summary[key], float)
    assert summary["samples"] == len(samples) and summary["events_sent"] == samples[-1]["events_sent"] > 0
    assert summary["drained"] and summary["events_scored"] > 0 and not summary["interrupted"]


def test_city_scale_soak_fills_the_tables_and_a_killed_worker_recovers_every_key(
    trained_data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = SoakConfig(
        minutes=0.2, rate=200, sample_s=3, keys=6000, recover=True, days_per_city=0.1, app_id="soak-keys"
    )
    summary = run_soak(Settings(data_dir=trained_data_dir), config)["summary"]
    lines = [orjson.loads(line) for line in capsys.readouterr().out.splitlines() if line.strip()]
    filled_keys = ("state_store", "keys_filled", "stored_bytes_per_key", "fill_s")
    assert lines[0] == {"filled": {k: summary[k] for k in filled_keys}}
    assert summary["state_store"] == Settings().state_store
    assert summary["keys_filled"] == 6000
    assert summary["keys_at_ready"] >= 6000 and summary["rss_kb_per_key_at_ready"] > 0
    assert summary["drained"] and summary["events_scored"] > 0
    # Killed -9 after the run: the new worker holds every key the old one had, live keys included.
    assert summary["keys_before_kill"] > 6000
    assert summary["keys_recovered"] >= summary["keys_before_kill"]
    assert 0 < summary["recovery_s"] < 120


@pytest.mark.unit
def test_slope_is_least_squares_per_minute() -> None:
    assert slope_per_minute([(0, 100.0), (60, 110.0), (120, 120.0)]) == pytest.approx(10.0)
    assert slope_per_minute([(0, 1.0), (30, None), (60, 3.0)]) == pytest.approx(2.0)  # gaps are skipped
    assert slope_per_minute([(0, 5.0)]) is None
    assert slope_per_minute([(10, 1.0), (10, 2.0)]) is None
