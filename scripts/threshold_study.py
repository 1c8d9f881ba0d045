"""Does the face-to-face budget hold on new cities? Train with several seeds, evaluate each at ``--budget``.

    python scripts/threshold_study.py OUT_DIR LABEL '{"threshold_folds": 4}' 7,8,9,10 [TRAIN_CITY]

expects OUT_DIR/TRAIN_CITY (default train21) and OUT_DIR/eval555, eval777, eval999 (``fraudwatch simulate``
folders: a train city 3000 subscribers x 14 days, e.g. seed 21 as train21 or seed 22 as train22, the eval
cities 3000 x 7 days, all at 40 victims per 10k per day); it caches their feature rows in OUT_DIR (the caches
hold the feature set of the code that built them: use a fresh OUT_DIR after changing features), registers the
models under OUT_DIR/reg/LABEL (OUT_DIR/reg/LABEL-TRAIN_CITY for another train city) and appends one JSON line
per (seed, city) to OUT_DIR/results.jsonl. Run it under ``nice``: each training run takes minutes.

The JSON overrides TrainConfig's defaults: ``'{}'`` is the default setup (3 models, thresholds on 4 subscriber
folds since detect4); ``'{"n_models": 1, "threshold_folds": 0}'`` is the earlier single-model, held-out-day one.
"""

from __future__ import annotations

import json
import pickle
import sys
import time
from pathlib import Path
from typing import Any

from models.budget import threshold_for_budget
from models.dataset import Dataset, build_dataset, load_events, read_jsonl
from models.evaluate import evaluate_dataset
from models.registry import ModelRegistry
from models.scoring import Scorer
from models.train import TrainConfig, train_model

FIELDS = (
    "false_tasks",
    "false_tasks_per_10k_per_day",
    "cases_with_loss",
    "cases_flagged_before_loss",
    "cases_flagged_by_loss",
    "cases_observable_before_loss",
    "cases_observable_by_loss",
    "observable_flagged_before_loss",
    "observable_flagged_by_loss",
    "missed_before_loss",
    "pr_auc",
    "tasks",
)


def city(root: Path, name: str) -> tuple[Dataset, list[dict[str, Any]]]:
    cache = root / f"ds_{name}.pkl"
    if cache.exists():
        data, cases = pickle.loads(cache.read_bytes())
        return data, cases
    cases = read_jsonl(root / name / "cases.jsonl")
    data = build_dataset(load_events(root / name / "events.jsonl").events, cases)
    cache.write_bytes(pickle.dumps((data, cases)))
    return data, cases


def main(
    root: Path, label: str, config: dict[str, Any], seeds: list[int], train: str = "train21", budget: float = 1.0
) -> None:
    train_data, train_cases = city(root, train)
    evals = {seed: city(root, f"eval{seed}") for seed in (555, 777, 999)}
    registry = ModelRegistry(root / "reg" / (label if train == "train21" else f"{label}-{train}"))
    for seed in seeds:
        start = time.time()
        version = train_model(
            train_data, {c["victim"] for c in train_cases}, registry, TrainConfig(seed=seed, **config), {}
        )
        seconds = round(time.time() - start, 1)
        scorer = Scorer(version, compiled=False)
        threshold = threshold_for_budget(scorer.meta, budget)
        for eval_seed, (data, cases) in evals.items():
            result = evaluate_dataset(data, cases, scorer, threshold=threshold)
            line = {key: result[key] for key in FIELDS}
            line.update(
                label=label,
                train=train,
                seed=seed,
                city=eval_seed,
                threshold=threshold,
                train_s=seconds,
                threshold_info=version.meta.get("threshold_info"),
            )
            print(json.dumps(line), flush=True)
            with open(root / "results.jsonl", "a") as out:
                out.write(json.dumps(line) + "\n")


if __name__ == "__main__":
    args = sys.argv[1:]
    main(Path(args[0]), args[1], json.loads(args[2]), [int(s) for s in args[3].split(",")], *args[4:5])
