"""Leave-one-scenario-out check of the feature set: does a scenario the model never saw still rank high?

    python scripts/loso_features.py run OUT_DIR LABEL [--seeds 1,2] [--drop NAME,NAME]
    python scripts/loso_features.py table OUT_DIR [--labels before,after]

``run``, per seed: simulates a training city (3000 x 8 days, 40 victims per 10k per day) and two judged
cities (6000 x 2.5 days, 80 victims per 10k per day, judged after a 1-day warm-up: another size, another
seed): ``plain`` as the simulator makes it and ``mobile``, where the ring lines the simulator would draw from
overseas/virtual/VoIP/unknown ranges are plain mobile numbers instead (most fraud calls then come from
mobiles, as on the generator the model is judged on). For each scenario S it trains one booster on the
training city without S (every row of S's victims left out; S's events still shape the other rows' caller and
payee features, which a rebuild per S would avoid at 5x the cost) and one on every scenario, then matches
the task threshold on the judged city to 1 false task per 10k per day (``operating_curve``: the oracle
threshold, so the figure is the ranking's) and counts S's loss cases flagged strictly before and by the loss.
The judged rows of the other scenarios' victims are left out, so they are neither hits nor false tasks.
A scenario with no loss case in the judged cities (romance takes days to reach the money) is not judged.

``--drop`` blanks features (all NaN in training and judging: no split can use them), to try a removal
without editing the registry. Feature rows are cached in OUT_DIR per features hash and city; one JSON line
per (seed, city, left out, scenario) is appended to OUT_DIR/results.jsonl.

``table`` prints, per judged city and scenario, the median and range over seeds of the loss cases flagged
before / by the loss, for the model that never saw the scenario ("left out") and for the one that did ("seen").

Run it under ``nice``: one seed takes a few minutes.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import pickle
import statistics
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

# On a shared machine OpenMP threads that spin while they wait slow every other process down and gain little.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np

import sandbox.simulate as sim
from core.decode import decode_obj
from features import FEATURE_INDEX, FEATURES_HASH
from models.dataset import Dataset, build_dataset
from models.evaluate import judged_after_warmup, operating_curve
from models.registry import ModelRegistry
from models.scoring import Scorer
from models.train import TrainConfig, train_model

__all__ = ["judged_city", "main", "scenario_figures", "train_city"]

SCENARIOS = sim.SCENARIOS
RATE = 1.0  # false tasks per 10k per day at which the threshold is matched
WARMUP_DAYS = 1.0
CITIES = ("plain", "mobile")
# What a mostly-mobile generator's ring lines look like: the simulator keeps 30% plain mobile lines and
# draws the rest from these weights instead of its overseas/virtual/VoIP/unknown mix.
_MOBILE_HEAVY = sim._weighted([("mobile", 0.85), ("virtual", 0.05), ("voip", 0.05), ("overseas", 0.05)])


@contextmanager
def _mobile_rings() -> Iterator[None]:
    saved = sim._KIND_SUSPICIOUS
    sim._KIND_SUSPICIOUS = _MOBILE_HEAVY
    try:
        yield
    finally:
        sim._KIND_SUSPICIOUS = saved


def _dataset(root: Path, name: str, config: sim.CityConfig, mobile: bool = False) -> tuple[Dataset, list[Any]]:
    """Feature rows and cases of one simulated city, cached per features hash."""
    cache = root / f"ds_{FEATURES_HASH}_{name}.pkl"
    if cache.exists():
        data, cases = pickle.loads(cache.read_bytes())
        return data, cases
    if mobile:
        with _mobile_rings():
            city = sim.simulate(config)
    else:
        city = sim.simulate(config)
    data = build_dataset([decode_obj(e) for e in city.events], city.cases)
    cache.write_bytes(pickle.dumps((data, city.cases)))
    return data, city.cases


def train_city(root: Path, seed: int) -> tuple[Dataset, list[Any]]:
    """The training city of a seed."""
    config = sim.CityConfig(subscribers=3000, days=8, seed=100 + seed, victims_per_10k_per_day=40)
    return _dataset(root, f"train{seed}", config)


def judged_city(root: Path, seed: int, kind: str) -> tuple[Dataset, list[Any]]:
    """A judged city of a seed, after the warm-up: its rows and cases (``kind``: plain or mobile)."""
    config = sim.CityConfig(subscribers=6000, days=2.5, seed=200 + seed, victims_per_10k_per_day=80)
    data, cases = _dataset(root, f"judged{seed}_{kind}", config, mobile=kind == "mobile")
    keep, judged = judged_after_warmup(data, cases, WARMUP_DAYS)
    return data.subset(keep), judged


def _blank(data: Dataset, drop: list[str]) -> Dataset:
    if not drop:
        return data
    X = data.X.copy()
    for name in drop:
        X[:, FEATURE_INDEX[name]] = np.nan
    return Dataset(data.rows, X, data.y, data.avail_ms)


def scenario_figures(data: Dataset, cases: list[Any], scores: np.ndarray, scenario: str) -> dict[str, Any]:
    """Loss cases of ``scenario`` reached at the matched threshold, the other scenarios' victims left out."""
    mine = [c for c in cases if c["scenario"] == scenario]
    others = {c["victim"] for c in cases if c["scenario"] != scenario} - {c["victim"] for c in mine}
    keep = np.asarray([r.subscriber not in others for r in data.rows], dtype=bool)
    point = operating_curve(data.subset(keep), mine, scores[keep], rates=(RATE,))[0]
    return {
        "with_loss": point["cases_with_loss"],
        "before": point["cases_flagged_before_loss"],
        "by": point["cases_flagged_by_loss"],
        "spent": point["false_tasks_per_10k_per_day"],
    }


def _train(data: Dataset, cases: list[Any], leave_out: str | None, registry: ModelRegistry, seed: int) -> Scorer:
    kept = [c for c in cases if c["scenario"] != leave_out]
    gone = {c["victim"] for c in cases if c["scenario"] == leave_out}
    keep = np.asarray([r.subscriber not in gone for r in data.rows], dtype=bool)
    version = train_model(
        data.subset(keep),
        {c["victim"] for c in kept},
        registry,
        TrainConfig(n_models=1, threshold_folds=0, seed=seed),
        {"left_out": leave_out},
    )
    return Scorer(version, compiled=False)


def run(root: Path, label: str, seeds: list[int], drop: list[str]) -> None:
    """Append one result line per (seed, judged city, model, scenario) to ``root/results.jsonl``."""
    root.mkdir(parents=True, exist_ok=True)
    for seed in seeds:
        train, train_cases = train_city(root, seed)
        train = _blank(train, drop)
        judged = {kind: judged_city(root, seed, kind) for kind in CITIES}
        judged = {kind: (_blank(d, drop), c) for kind, (d, c) in judged.items()}
        # A scenario without a judged loss case (romance takes days to reach money) cannot be judged here.
        judged_scenarios = [
            s
            for s in SCENARIOS
            if any(c["scenario"] == s for _, cs in judged.values() for c in cs if c.get("first_loss_ms"))
        ]
        with tempfile.TemporaryDirectory(dir=root) as tmp:
            registry = ModelRegistry(Path(tmp))
            for leave_out in (None, *judged_scenarios):
                scorer = _train(train, train_cases, leave_out, registry, seed)
                for kind, (data, cases) in judged.items():
                    scores = scorer.score(data.X)
                    for scenario in judged_scenarios if leave_out is None else (leave_out,):
                        line = {
                            "label": label,
                            "features_hash": FEATURES_HASH,
                            "drop": drop,
                            "seed": seed,
                            "city": kind,
                            "model": "seen" if leave_out is None else "left_out",
                            "scenario": scenario,
                            **scenario_figures(data, cases, scores, scenario),
                        }
                        print(json.dumps(line), flush=True)
                        with (root / "results.jsonl").open("a") as fh:
                            fh.write(json.dumps(line) + "\n")


def _cell(values: list[int]) -> str:
    if not values:
        return "-"
    return f"{statistics.median(values):g} [{min(values)}-{max(values)}]"


def table(root: Path, labels: list[str] | None) -> None:
    """Median [range] over seeds of the loss cases flagged before / by the loss, per label, city and scenario."""
    groups: dict[tuple[str, str, str, str], list[dict[str, Any]]] = collections.defaultdict(list)
    for text in (root / "results.jsonl").read_text().splitlines():
        line = json.loads(text)
        if labels is None or line["label"] in labels:
            groups[(line["label"], line["city"], line["model"], line["scenario"])].append(line)
    order = labels or sorted({k[0] for k in groups})
    print("| label | city | model | scenario | seeds | loss cases | before loss | by loss |")
    print("|---|---|---|---|---|---|---|---|")
    for label in order:
        for city in CITIES:
            for model in ("left_out", "seen"):
                totals = collections.Counter[str]()
                for scenario in SCENARIOS:
                    lines = groups.get((label, city, model, scenario), [])
                    if not lines:
                        continue
                    for key in ("with_loss", "before", "by"):
                        totals[key] += sum(x[key] for x in lines)
                    cells = [_cell([x[key] for x in lines]) for key in ("with_loss", "before", "by")]
                    print(f"| {label} | {city} | {model} | {scenario} | {len(lines)} | {' | '.join(cells)} |")
                if totals:
                    share_before = totals["before"] / max(totals["with_loss"], 1)
                    share_by = totals["by"] / max(totals["with_loss"], 1)
                    print(
                        f"| {label} | {city} | {model} | **all (sum)** | | {totals['with_loss']} | "
                        f"{totals['before']} ({share_before:.0%}) | {totals['by']} ({share_by:.0%}) |"
                    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p_run = sub.add_parser("run")
    p_run.add_argument("out", type=Path)
    p_run.add_argument("label")
    p_run.add_argument("--seeds", default="1,2")
    p_run.add_argument("--drop", default="")
    p_table = sub.add_parser("table")
    p_table.add_argument("out", type=Path)
    p_table.add_argument("--labels", default="")
    args = parser.parse_args()
    if args.command == "run":
        seeds = [int(s) for s in args.seeds.split(",")]
        run(args.out, args.label, seeds, [d for d in args.drop.split(",") if d])
    else:
        table(args.out, [x for x in args.labels.split(",") if x] or None)


if __name__ == "__main__":
    main()
