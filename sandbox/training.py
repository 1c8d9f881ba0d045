"""File-level glue for ``train`` and ``evaluate``: read the contract files, call the model layer."""

from __future__ import annotations

import dataclasses
import math
import os
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import orjson

from core.decode import decode_obj
from core.errors import TrainingDataError
from core.settings import Settings
from models import (
    OUTCOME_DELAY_MS,
    Dataset,
    FollowConfig,
    ModelRegistry,
    ModelVersion,
    ResidentSpan,
    Scorer,
    TrainConfig,
    build_dataset,
    cases_from_labels,
    cases_from_reported_numbers,
    cases_from_reports,
    compile_version,
    concat_datasets,
    evaluate,
    evaluate_dataset,
    followed_levels,
    fraud_contacts,
    judged_after_warmup,
    labels_known_by,
    load_events,
    read_jsonl,
    read_labels,
    threshold_for_budget,
    train_model,
    with_reports,
)
from sandbox.othergen import SCENARIOS as OTHER_SCENARIOS
from sandbox.othergen import OtherConfig, simulate_other, write_other_city
from sandbox.simulate import DAY_MS, DEFAULT_SCENARIO_WEIGHTS, CityConfig, read_city_meta, simulate, write_city
from sandbox.worlds import AnyWorld, describe_world

__all__ = [
    "CARD_EVALUATION_FILE",
    "HOLDOUT_DAYS",
    "HOLDOUT_SEED_OFFSET",
    "World",
    "evaluate_files",
    "holdout_city",
    "last_protocol_result",
    "resolve_model",
    "train_from_files",
    "train_on_worlds",
    "without_scenarios",
    "world_config",
    "world_dataset",
    "world_people",
    "worlds_of",
    "write_card_for",
    "write_card_on_city",
]

HOLDOUT_DAYS = 2.0
HOLDOUT_SEED_OFFSET = 1000
CARD_EVALUATION_FILE = "card_evaluation.json"


def holdout_city(train_city: CityConfig, days: float = HOLDOUT_DAYS, warmup_days: float = 0.0) -> CityConfig:
    """The hold-out city of a training city: same size and rates, another seed, the days right after it.

    ``warmup_days`` more days come first, to be judged with that warm-up (``write_card_on_city``).
    """
    return dataclasses.replace(
        train_city,
        seed=train_city.seed + HOLDOUT_SEED_OFFSET,
        days=days + warmup_days,
        start_ms=train_city.start_ms + math.ceil(train_city.days) * DAY_MS,
    )


def write_card_for(
    version: ModelVersion,
    events: Path,
    cases: Path,
    settings: Settings,
    budget: float | None = None,
    out_dir: Path | None = None,
    source: str | None = None,
    warmup_days: float = 0.0,
    protocol: dict[str, Any] | None = None,
) -> Path:
    """Evaluate ``version`` on an events/cases pair and write its model card (and the evaluation JSON).

    The card goes next to the model unless ``out_dir`` is given; ``source`` says in the card what the
    files are (default: their paths). ``warmup_days`` judges only what follows them, as ``evaluate`` does.
    ``protocol``: a generalisation protocol result to open the card with (default: the last
    ``fraudwatch generalise`` run's, if there is one). Returns the path of ``card.md``.
    """
    from models import COLD_START_KEYS, write_model_card  # matplotlib only when a card is asked for

    scorer = Scorer(version)
    follow = FollowConfig.from_settings(settings) if settings.budget_follow and budget is None else None
    threshold = threshold_for_budget(scorer.meta, budget) if budget is not None else None
    meta = read_city_meta(events)
    residents = int(meta["residents"]) if meta else (settings.residents or None)
    case_list = read_jsonl(cases)
    loaded = load_events(events)
    everything = build_dataset(loaded.events, case_list)
    contacts = fraud_contacts(loaded.events, case_list)
    all_scores = scorer.score(everything.X)  # once: the judged rows and the cold start share them
    # Decided as the service would, from the first event (the warm-up's too), as ``evaluate`` does.
    levels = held = None
    if follow is not None:
        people = residents or max(len(set(everything.subscribers)), 1)
        budget_now = settings.budget_tasks_per_10k_per_day
        followed = followed_levels(
            everything,
            case_list,
            scorer,
            all_scores,
            people,
            budget_now,
            settings.episode_ms,
            follow,
            hold_budget=settings.budget_holds_per_10k_per_day,
        )
        levels, held = followed.levels, followed.held
    keep, judged = judged_after_warmup(everything, case_list, warmup_days)
    data, scores = (everything.subset(keep), all_scores[keep]) if warmup_days > 0 else (everything, all_scores)
    judged_levels = None if levels is None else (levels[keep] if warmup_days > 0 else levels)
    judged_held = None if held is None else (held[keep] if warmup_days > 0 else held)
    result = evaluate_dataset(
        data,
        judged,
        scorer,
        settings.episode_ms,
        threshold,
        scores=scores,
        contacts=contacts,
        residents=residents,
        levels=judged_levels,
        held=judged_held,
    )
    if warmup_days > 0:
        result["warmup_days"] = warmup_days
        # Both protocols in one card while the cold start is still the comparable series.
        cold = evaluate_dataset(
            everything,
            case_list,
            scorer,
            settings.episode_ms,
            threshold,
            scores=all_scores,
            contacts=contacts,
            residents=residents,
            levels=levels,
            held=held,
        )
        result["cold_start"] = {key: cold.get(key) for key in COLD_START_KEYS}
    result["rejected_lines"] = loaded.rejected
    if budget is not None:
        result["budget_tasks_per_10k_per_day"] = budget
    if protocol is None:
        protocol = last_protocol_result(settings)
    from sandbox.field_trial import last_field_trial

    card = write_model_card(
        version,
        result,
        data,
        scores,
        out_dir,
        evaluation_source=source or f"`{events}` with cases `{cases}`",
        protocol=protocol,
        field_trial=last_field_trial(settings),
    )
    tmp = card.with_name(CARD_EVALUATION_FILE + ".tmp")
    tmp.write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY))
    os.replace(tmp, card.with_name(CARD_EVALUATION_FILE))
    return card


def last_protocol_result(settings: Settings) -> dict[str, Any] | None:
    """The last ``fraudwatch generalise`` result kept under the data folder, or None."""
    from sandbox.protocol import PROTOCOL_SCHEMA, protocol_path

    path = protocol_path(settings)
    if not path.exists():
        return None
    result = orjson.loads(path.read_bytes())
    return result if isinstance(result, dict) and result.get("schema") == PROTOCOL_SCHEMA else None


def write_card_on_city(version: ModelVersion, city: CityConfig, settings: Settings, warmup_days: float = 0.0) -> Path:
    """Simulate ``city`` (in a temporary folder), evaluate ``version`` on it and write the model card.

    With ``warmup_days`` the card judges what follows them, beside the whole city from its first day.
    """
    with tempfile.TemporaryDirectory(prefix="fw-card-city-") as tmp:
        paths = write_city(simulate(city), Path(tmp))
        source = (
            f"a hold-out simulated city ({city.subscribers} subscribers x {city.days:g} days, seed {city.seed}, "
            f"{city.victims_per_10k_per_day:g} victims per 10k per day)"
        )
        return write_card_for(
            version, paths["events"], paths["cases"], settings, source=source, warmup_days=warmup_days
        )


def train_from_files(
    events: Path,
    cases: Path | None,
    settings: Settings,
    budget: float | None = None,
    promote: bool = True,
    card_city: CityConfig | None = None,
    n_models: int | None = None,
    threshold_folds: int | None = None,
    card_warmup_days: float = 0.0,
    labels: Path | None = None,
    reports: Path | None = None,
    cutoff_ms: int | None = None,
    report_delay_ms: int = 3 * DAY_MS,
) -> ModelVersion:
    """Train on ``events``/``cases`` files and register (and by default promote) the model.

    ``labels``, a dump of the labels topic (``models.field_labels``), adds the field's outcomes beside the
    cases, or stands instead of them (``cases`` None); ``reports`` (police reports, ``case.v1`` records with a
    loss) likewise; the metadata says how many of each were used. ``cutoff_ms``: train only on what was known
    then: the events before it, the labels resolved by it, the reports made by it (``reported_ms``, else the
    loss plus ``report_delay_ms``).

    With ``card_city`` (e.g. ``holdout_city(training_city)``), the new model is evaluated on that simulated
    city and its model card written into its folder before it is promoted (judged after
    ``card_warmup_days``, e.g. those of ``holdout_city(training_city, warmup_days=...)``). ``n_models`` and
    ``threshold_folds`` are :class:`TrainConfig`'s seed ensemble and subscriber-fold thresholds (None: its
    defaults; ``n_models=1, threshold_folds=0`` trains about 3x faster, e.g. for tests).
    """
    if cases is None and labels is None and reports is None:
        raise TrainingDataError("give a cases file, a labels file, a police reports file, or more than one")
    case_list = read_jsonl(cases) if cases is not None else []
    loaded = load_events(events)
    if cutoff_ms is not None:
        loaded.events = [e for e in loaded.events if e.ts_ms < cutoff_ms]
    field: dict[str, Any] | None = None
    police: dict[str, Any] | None = None
    if labels is not None:
        found, doubled = read_labels(labels)
        known, late = labels_known_by(found, cutoff_ms)
        from_labels = cases_from_labels(known, loaded.events, doubled)
        case_list = case_list + from_labels.cases
        field = {"file": str(labels), **from_labels.summary(), "not_yet_known": late}
    if reports is not None:
        from_reports = cases_from_reports(read_jsonl(reports), cutoff_ms, report_delay_ms)
        ring = cases_from_reported_numbers(from_reports.cases, loaded.events)
        # The reports known by the cut-off reached the service too, as they were made (the reports topic).
        loaded.events = with_reports(loaded.events, from_reports.cases, report_delay_ms)
        case_list = case_list + from_reports.cases + ring
        police = {"file": str(reports), **from_reports.summary(), "reported_number_cases": len(ring)}
    data = build_dataset(loaded.events, case_list)
    if cutoff_ms is not None:  # a call is known when it ends: rows whose record came after the cut-off go too
        data = data.subset(data.avail_ms < cutoff_ms)
    spans, source = _file_residents(events, data, settings)
    info = {
        "events_file": str(events),
        "cases": len(case_list),
        "sources": {
            "cases_file": str(cases) if cases else None,
            "field_labels": field,
            "police_reports": police,
            "cutoff_ms": cutoff_ms,
        },
        "rejected_lines": loaded.rejected,
        "residents": sum(r for r, _, _ in spans) or None,
        "residents_source": source,
    }
    recipe = _Recipe(
        ModelRegistry(settings.models_path), promote=promote, card_city=card_city, card_warmup_days=card_warmup_days
    )
    victims = {c["victim"] for c in case_list}
    return _train_and_register(data, victims, info, settings, budget, n_models, threshold_folds, recipe, spans)


def _city_span(meta: dict[str, Any]) -> ResidentSpan:
    """A simulated city's residents over its own window, from its city.json (or ``SimulatedCity.meta``)."""
    return int(meta["residents"]), int(meta["start_ms"]), int(meta["end_ms"])


def _file_residents(events: Path, data: Dataset, settings: Settings) -> tuple[tuple[ResidentSpan, ...], str | None]:
    """Who the residents of an events file are, as ``evaluate`` finds them: city.json, else ``FW_RESIDENTS``
    (over the whole file), else unknown (the thresholds then count distinct numbers)."""
    meta = read_city_meta(events)
    if meta is not None and "start_ms" in meta and "end_ms" in meta:
        return (_city_span(meta),), "city.json"
    if (meta is not None or settings.residents) and len(data.avail_ms):
        residents = int(meta["residents"]) if meta is not None else settings.residents
        lo, hi = int(data.avail_ms.min()), int(data.avail_ms.max()) + 1
        return ((residents, lo, hi),), "city.json" if meta is not None else "FW_RESIDENTS"
    return (), None


@dataclasses.dataclass(frozen=True)
class _Recipe:
    """How one training run registers its model: where, how long it boosts, what it does after."""

    registry: ModelRegistry
    num_boost_round: int | None = None  # None: TrainConfig's
    compile_model: bool = True
    promote: bool = True
    card_city: CityConfig | None = None
    card_warmup_days: float = 0.0


def _train_and_register(
    data: Dataset,
    victims: set[str],
    data_info: dict[str, Any],
    settings: Settings,
    budget: float | None,
    n_models: int | None,
    threshold_folds: int | None,
    recipe: _Recipe,
    resident_spans: Sequence[ResidentSpan],
) -> ModelVersion:
    knobs: dict[str, Any] = {
        "n_models": n_models,
        "threshold_folds": threshold_folds,
        "num_boost_round": recipe.num_boost_round,
    }
    config = TrainConfig(
        budget_tasks_per_10k_per_day=budget if budget is not None else settings.budget_tasks_per_10k_per_day,
        budget_holds_per_10k_per_day=settings.budget_holds_per_10k_per_day,
        episode_ms=settings.episode_ms,
        resident_spans=tuple(resident_spans),
        **{name: value for name, value in knobs.items() if value is not None},
    )
    version = train_model(data, victims, recipe.registry, config, data_info)
    if recipe.compile_model and settings.compile_models:
        compile_version(version)
    if recipe.card_city is not None:
        write_card_on_city(version, recipe.card_city, settings, recipe.card_warmup_days)
    if recipe.promote:
        recipe.registry.promote(version.version)
    return version


def without_scenarios(world: AnyWorld, exclude: Iterable[str]) -> AnyWorld:
    """``world`` with the ``exclude`` scenarios taken out of its mix (the others keep their weights).

    Raises TrainingDataError when nothing would be left.
    """
    excluded = set(exclude)
    if not excluded:
        return world
    if isinstance(world, OtherConfig):
        names = tuple(n for n in (world.scenarios or OTHER_SCENARIOS) if n not in excluded)
        if not names:
            raise TrainingDataError(f"other-generator world seed {world.seed} has no scenario left")
        return dataclasses.replace(world, scenarios=names)
    pairs = world.scenario_weights if world.scenario_weights is not None else DEFAULT_SCENARIO_WEIGHTS
    kept = tuple((name, weight) for name, weight in pairs if name not in excluded and weight > 0)
    if not kept:
        raise TrainingDataError(f"world seed {world.seed} has no scenario left without {sorted(excluded)}")
    return dataclasses.replace(world, scenario_weights=kept)


@dataclasses.dataclass(frozen=True)
class World:
    """One simulated world through the serving features."""

    data: Dataset
    cases: list[dict[str, Any]]
    events: int
    residents: ResidentSpan


def world_dataset(world: AnyWorld, out_dir: Path | None = None) -> World:
    """A world simulated (by our simulator or the other generator) and run through the serving features: its
    rows, cases, event count and residents."""
    if isinstance(world, OtherConfig):
        other = simulate_other(world)
        if out_dir is not None:
            write_other_city(other, out_dir)
        raw, cases, meta = other.events, other.cases, other.meta
    else:
        city = simulate(world)
        if out_dir is not None:
            write_city(city, out_dir)
        raw, cases, meta = city.events, city.cases, city.meta
    # The simulators write contract events; the decoder turns them into what the stream's agents see.
    events = [decode_obj(ev) for ev in raw]
    return World(build_dataset(events, cases), cases, len(events), _city_span(meta))


def train_on_worlds(
    worlds: Sequence[AnyWorld],
    settings: Settings,
    exclude_scenarios: Iterable[str] = (),
    budget: float | None = None,
    promote: bool = False,
    card_city: CityConfig | None = None,
    n_models: int | None = None,
    threshold_folds: int | None = None,
    card_warmup_days: float = 0.0,
    out_dir: Path | None = None,
    registry: ModelRegistry | None = None,
    num_boost_round: int | None = None,
    compile_model: bool = True,
    data_info: Mapping[str, Any] | None = None,
) -> ModelVersion:
    """Train one model on the pooled rows of several simulated worlds and register it (not promoted by default).

    Each world is simulated and featurised on its own (its own history), then the rows are pooled; worlds
    should share ``start_ms`` (``sample_worlds`` does) so that the time-ordered split cuts them alike.
    ``exclude_scenarios`` are taken out of every world's mix first (a leave-one-scenario-out run trains
    without the scenario it then judges on). ``out_dir`` keeps each world's files in ``out_dir/world-K``.
    ``registry`` (default: the service's), ``num_boost_round`` (default: TrainConfig's) and ``compile_model``
    (with ``settings.compile_models``) are for runs like the protocol's; ``data_info`` is added to the model's
    ``data`` metadata, which lists the worlds. The other arguments are :func:`train_from_files`'s.
    """
    if not worlds:
        raise TrainingDataError("no worlds to train on")
    excluded = sorted(set(exclude_scenarios))
    worlds = [without_scenarios(world, excluded) for world in worlds]
    done = [world_dataset(w, None if out_dir is None else out_dir / f"world-{k + 1}") for k, w in enumerate(worlds)]
    victims = {c["victim"] for one in done for c in one.cases}
    info = {
        "source": "simulated worlds",
        "worlds": [describe_world(world) for world in worlds],
        # Every field, so a later retrain (``fraudwatch field-trial``) can simulate the same worlds again.
        "world_configs": [world_config(world) for world in worlds],
        "excluded_scenarios": excluded,
        "sources": {"simulated_worlds": len(worlds), "cases": sum(len(one.cases) for one in done)},
        "cases": sum(len(one.cases) for one in done),
        "events": sum(one.events for one in done),
        "subscriber_days": round(sum(world_people(w) * w.days for w in worlds), 1),
        "residents": sum(one.residents[0] for one in done),
        "residents_source": "simulated worlds",
        "rejected_lines": {},
        **(data_info or {}),
    }
    recipe = _Recipe(
        registry if registry is not None else ModelRegistry(settings.models_path),
        num_boost_round,
        compile_model,
        promote,
        card_city,
        card_warmup_days,
    )
    data = concat_datasets([one.data for one in done])
    spans = [one.residents for one in done]
    return _train_and_register(data, victims, info, settings, budget, n_models, threshold_folds, recipe, spans)


def world_people(world: AnyWorld) -> int:
    """A world's residents, whichever generator makes it."""
    return world.residents if isinstance(world, OtherConfig) else world.subscribers


def world_config(world: AnyWorld) -> dict[str, Any]:
    """A world's every field as JSON, with the generator that makes it (``worlds_of`` reads it back)."""
    return {**dataclasses.asdict(world), "generator": "other" if isinstance(world, OtherConfig) else "simulate"}


def worlds_of(version: ModelVersion) -> list[AnyWorld] | None:
    """The simulated worlds a model was trained on, from its metadata; None when it does not record them."""
    configs = version.meta.get("data", {}).get("world_configs")
    if not configs:
        return None
    pairs = ("scenario_weights", "fraud_line_kinds")  # JSON lists of [name, weight] back to tuples
    out: list[AnyWorld] = []
    for stored in configs:
        config = dict(stored)
        if config.pop("generator", "simulate") == "other":
            names = config.get("scenarios")
            out.append(OtherConfig(**{**config, "scenarios": tuple(names) if names is not None else None}))
            continue
        fields: dict[str, Any] = {
            k: (tuple(tuple(p) for p in v) if k in pairs and v is not None else v) for k, v in config.items()
        }
        out.append(CityConfig(**fields))
    return out


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
    events: Path,
    cases: Path,
    settings: Settings,
    model: str | None = None,
    budget: float | None = None,
    warmup_days: float = 0.0,
    residents: int | None = None,
    static_thresholds: bool = False,
    outcome_delay_h: float | None = None,
) -> dict[str, Any]:
    """The contract's evaluation object for an events file and its cases.

    Thresholds follow simulated outcomes as the service's do (``FW_BUDGET_*``), unless ``static_thresholds``
    (the model's own, or with ``budget`` the one its grid stores for that budget). ``residents``: given, else
    the ``city.json`` beside the events, else ``FW_RESIDENTS``, else distinct callees and payers.
    """
    scorer = Scorer(resolve_model(settings, model))
    follow = settings.budget_follow and not static_thresholds
    threshold = threshold_for_budget(scorer.meta, budget) if budget is not None and not follow else None
    source = "given"
    if residents is None:
        meta = read_city_meta(events)
        residents = int(meta["residents"]) if meta else None
        source = "city.json"
    if residents is None and settings.residents:
        residents, source = settings.residents, "FW_RESIDENTS"
    loaded = load_events(events)
    delay_ms = int(outcome_delay_h * 3_600_000) if outcome_delay_h is not None else OUTCOME_DELAY_MS
    result = evaluate(
        loaded.events,
        read_jsonl(cases),
        scorer,
        settings.episode_ms,
        threshold,
        warmup_days,
        residents=residents,
        budget=budget if budget is not None else settings.budget_tasks_per_10k_per_day,
        follow=FollowConfig.from_settings(settings) if follow else None,
        outcome_delay_ms=delay_ms,
        hold_budget=settings.budget_holds_per_10k_per_day,
    )
    if residents is not None:
        result["residents_source"] = source
    result["rejected_lines"] = loaded.rejected
    if budget is not None:
        result["budget_tasks_per_10k_per_day"] = budget
    return result
