"""The benchmark runs end to end in tiny mode (figures come from the full run, not from here)."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.settings import Settings
from sandbox.benchmark import BenchConfig, histogram_quantiles, run_benchmark, scrape_sum, summarize_profile

pytestmark = pytest.mark.integration


def test_tiny_benchmark_reports_every_figure(trained_data_dir: Path) -> None:
    result = run_benchmark(Settings(data_dir=trained_data_dir), BenchConfig.tiny())
    assert result["worker"]["events"] == result["backlog_events"] > 0
    assert result["naive_agent"]["events"] == result["backlog_events"]
    assert result["worker"]["events_per_s"] > 0 and result["naive_agent"]["events_per_s"] > 0
    assert result["worker"]["peak_rss_mb"] > 0
    for figures in result["latency_event_to_decision"].values():
        assert figures["count"] > 0
        assert 0 < figures["p50_ms"] <= figures["p95_ms"] <= figures["p99_ms"]
        for stage in ("callers", "score"):
            p50, p99 = figures["pack_arrival_p50_p99_ms"][stage]
            assert p50 is not None and p99 is not None and 0 < p50 <= p99, figures
        # Each process's share of a core while the rate was offered: the worker and the broker both worked.
        cpu = figures["cpu_share_of_one_core"]
        assert cpu["worker"] > 0 and cpu["broker"] > 0 and cpu["all"] >= cpu["worker"] + cpu["broker"], cpu
    scaled = result["latency_scaled_out"]
    assert scaled["workers"] == 2 and scaled["count"] > 0, scaled
    assert 0 < scaled["p50_ms"] <= scaled["p99_ms"]
    # Both processes took part: each owned partitions and burnt CPU on them.
    assert all(share and share > 0 for share in scaled["cpu_share_of_one_core_per_worker"]), scaled
    holds = result["hold_latency"]
    # Every hold the worker issued reached the bank once, and its latency was measured.
    assert holds["holds_issued"] > 0 and holds["holds_delivered"] == holds["holds_issued"], holds
    assert holds["bank_received"] == holds["holds_issued"], holds
    figures = holds["transfer_to_bank_2xx"]
    assert figures["count"] == holds["holds_issued"] and 0 < figures["p50_ms"] <= figures["p99_ms"], holds
    assert holds["p99_vs_objective"] is not None
    # The model kept its own thresholds; its hold threshold is its trained one, or its level 1 when that held few.
    assert holds["holds_expected_offline"] <= holds["transfers_scored_offline"], holds
    # The phase says how much of its load was alerts (every held transfer is one).
    assert 0 < holds["alert_share_of_events"] <= 1, holds
    assert result["in_process"]["raw_batched_predict_rows_per_s"] > 0
    assert result["ratios"]["worker_vs_naive_agent"] > 0
    assert result["worker"]["cpu_us_per_event"] > 0 and result["limits"]
    # A worker that started on filled tables drained the whole backlog too, on either store.
    assert set(result["drain_at_state_keys"]) == {"memory", "local"}
    for by_keys in result["drain_at_state_keys"].values():
        (at_keys,) = by_keys.values()
        assert at_keys["events"] >= result["backlog_events"] and at_keys["events_per_s"] > 0
        assert at_keys["ready_s"] > 0


@pytest.mark.unit
def test_histogram_quantiles_keep_to_the_labels_asked_for() -> None:
    name = "h"
    after = {
        f"{name}_bucket{{le=0.01,stage=a}}": 10.0,
        f"{name}_bucket{{le=+Inf,stage=a}}": 10.0,
        f"{name}_bucket{{le=0.01,stage=b}}": 0.0,
        f"{name}_bucket{{le=+Inf,stage=b}}": 10.0,
    }
    assert histogram_quantiles({}, after, name, stage="a")["p99_ms"] == pytest.approx(9.9)
    assert histogram_quantiles({}, after, name, stage="b")["p50_ms"] == pytest.approx(10.0)  # all above 10 ms
    assert histogram_quantiles({}, after, name, stage="a")["count"] == 10


@pytest.mark.unit
def test_histogram_quantiles_interpolate_within_buckets() -> None:
    name = "h"
    before = {f"{name}_bucket{{le=0.01}}": 0.0, f"{name}_bucket{{le=0.1}}": 0.0, f"{name}_bucket{{le=+Inf}}": 0.0}
    after = {f"{name}_bucket{{le=0.01}}": 50.0, f"{name}_bucket{{le=0.1}}": 100.0, f"{name}_bucket{{le=+Inf}}": 100.0}
    q = histogram_quantiles(before, after, name)
    assert q["p50_ms"] == pytest.approx(10.0)
    assert q["p99_ms"] == pytest.approx(98.2)
    assert q["count"] == 100


@pytest.mark.unit
def test_profile_summary_shares_own_inclusive_and_package_time() -> None:
    raw = (
        "main (app/cli.py:1);score (streams/agents.py:10);predict (lightgbm/basic.py:5) 3\n"
        "main (app/cli.py:1);score (streams/agents.py:10) 1\n"
    )
    summary = summarize_profile(raw)
    assert summary["samples"] == 4
    assert summary["top_own_time_pct"] == {"predict basic.py": 75.0, "score agents.py": 25.0}
    assert summary["by_package_pct"] == {"lightgbm": 75.0, "streams": 25.0}
    assert summary["agents_and_landmarks_pct"] == {"score agents.py": 100.0}


@pytest.mark.unit
def test_scrape_sum_adds_up_workers(monkeypatch: pytest.MonkeyPatch) -> None:
    pages = {"a": {"c{}": 2.0, "h_bucket{le=1}": 1.0}, "b": {"c{}": 3.0, "only_b{}": 1.0}}
    monkeypatch.setattr("sandbox.benchmark.scrape", lambda url: pages[url])
    assert scrape_sum(["a", "b"]) == {"c{}": 5.0, "h_bucket{le=1}": 1.0, "only_b{}": 1.0}
