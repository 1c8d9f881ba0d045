"""One model against cities with a full, a lossy and no signalling feed, thresholds and holds followed.

    python scripts/signalling_study.py MODEL_DIR [SUBSCRIBERS] [DAYS] [SEED] [WARMUP_DAYS]

MODEL_DIR is a registry (its live version is judged), e.g. the one `fraudwatch run` trained under
``$FW_DATA_DIR/models``. Simulates the same city (same seed) at signalling 1.0, 0.5 and 0.0, evaluates each as
``fraudwatch evaluate`` does (followed thresholds, simulated outcomes, per resident, judged after the warm-up)
and prints one JSON line per city with the figures issue #17 is judged on.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

from core.settings import Settings
from sandbox.simulate import CityConfig, simulate, write_city
from sandbox.training import evaluate_files

FIGURES = (
    "false_tasks_per_10k_per_day",
    "false_holds_per_10k_per_day",
    "cases_with_loss",
    "cases_flagged_before_loss",
    "cases_flagged_by_loss",
    "cases_held_at_loss",
    "cases_stopped",
    "cases_first_flagged_during_call",
    "in_call_alerts",
    "pr_auc",
)


def main(argv: list[str]) -> None:
    """Print the figures of each signalling share's city."""
    if not argv:
        raise SystemExit(__doc__)
    model_dir = Path(argv[0])
    subscribers = int(argv[1]) if len(argv) > 1 else 4000
    days = float(argv[2]) if len(argv) > 2 else 6.0
    seed = int(argv[3]) if len(argv) > 3 else 556
    warmup = float(argv[4]) if len(argv) > 4 else 3.0
    settings = Settings(model_dir=model_dir)
    with tempfile.TemporaryDirectory() as tmp:
        for share in (1.0, 0.5, 0.0):
            city = simulate(CityConfig(subscribers=subscribers, days=days, seed=seed, signalling=share))
            paths = write_city(city, Path(tmp) / f"city-{share}")
            result = evaluate_files(paths["events"], paths["cases"], settings, warmup_days=warmup)
            row = {"signalling": share, **{k: result.get(k) for k in FIGURES}}
            followed = result.get("thresholds_followed") or {}
            row["task_threshold_last"] = followed.get("task_threshold_last")
            row["hold_threshold_last"] = followed.get("hold_threshold_last")
            print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
