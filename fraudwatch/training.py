"""File-level glue for ``train`` and ``evaluate``: read the contract files, call the model layer."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fraudwatch.settings import Settings
from models.budget import threshold_for_budget
from models.compiled import compile_version
from models.dataset import build_dataset, load_events, read_jsonl
from models.evaluate import evaluate
from models.registry import ModelRegistry, ModelVersion
from models.scoring import Scorer
from models.train import TrainConfig, train_model


def train_from_files(
    events: Path, cases: Path, settings: Settings, budget: float | None = None, promote: bool = True
) -> ModelVersion:
    """Train on ``events``/``cases`` files and register (and by default promote) the model."""
    case_list = read_jsonl(cases)
    loaded = load_events(events)
    data = build_dataset(loaded.events, case_list)
    registry = ModelRegistry(settings.models_path)
    config = TrainConfig(
        budget_tasks_per_10k_per_day=budget if budget is not None else settings.budget_tasks_per_10k_per_day,
        episode_ms=settings.episode_ms,
    )
    version = train_model(
        data,
        {c["victim"] for c in case_list},
        registry,
        config,
        {"events_file": str(events), "cases": len(case_list), "rejected_lines": loaded.rejected},
    )
    if settings.compile_models:
        compile_version(version)
    if promote:
        registry.promote(version.version)
    return version


def resolve_model(settings: Settings, model: str | None) -> ModelVersion:
    """A model named by registry version or by folder path; default the live one."""
    registry = ModelRegistry(settings.models_path)
    if model is None:
        return registry.live()
    path = Path(model)
    if (path / "meta.json").exists():
        return ModelRegistry(path.parent).get(path.name)
    return registry.get(model)


def evaluate_files(
    events: Path, cases: Path, settings: Settings, model: str | None = None, budget: float | None = None
) -> dict[str, Any]:
    """The contract's evaluation object for an events file and its cases."""
    scorer = Scorer(resolve_model(settings, model))
    threshold = threshold_for_budget(scorer.meta, budget) if budget is not None else None
    loaded = load_events(events)
    result = evaluate(loaded.events, read_jsonl(cases), scorer, settings.episode_ms, threshold)
    result["rejected_lines"] = loaded.rejected
    if budget is not None:
        result["budget_tasks_per_10k_per_day"] = budget
    return result
