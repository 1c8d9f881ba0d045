"""The ``fraudwatch`` command line: simulate, train, evaluate, replay, worker, models, run."""

from __future__ import annotations

import asyncio
import gc
import os
import signal
import sys
from pathlib import Path
from typing import Annotated, Any, Literal

import orjson
import typer

from core.settings import get_settings

# LightGBM's OpenMP threads spin while they wait; on shared cores that made each training ~7x slower (62 s ->
# 8 s for one quick model on 2 cores under load). Read when lightgbm is first loaded, so before any command.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__, pretty_exceptions_enable=False)
models_app = typer.Typer(no_args_is_help=True, help="The model registry: list, promote, roll back, model cards.")
app.add_typer(models_app, name="models")


_debug = {"on": False}


@app.callback()
def _options(
    debug: Annotated[bool, typer.Option("--debug", help="Show the traceback of an error, not only its line")] = False,
) -> None:
    """The fraudwatch command line."""
    _debug["on"] = debug


def _error_line(exc: BaseException) -> str | None:
    """One line saying what happened and what to do, for the errors a user can act on; None for a bug."""
    from core.errors import FraudwatchError, NoModel, UnknownVersion

    if isinstance(exc, NoModel):
        return f"{exc}: train one with `fraudwatch train EVENTS CASES` (or run `fraudwatch run`, which trains one)"
    if isinstance(exc, UnknownVersion):
        return f"{exc}: `fraudwatch models list` shows the versions there are"
    if isinstance(exc, FileNotFoundError):
        return f"no such file or folder: {exc.filename or exc}"
    if isinstance(exc, FraudwatchError):  # the one root: every project error says what happened
        return str(exc)
    return None


def main() -> None:
    """The ``fraudwatch`` entry point: a project error becomes one line on stderr and exit status 1
    (``--debug`` or ``FW_DEBUG=1`` shows the traceback too); anything else is a bug and keeps its traceback."""
    try:
        app()
    except Exception as exc:
        line = _error_line(exc)
        if line is None or _debug["on"] or os.environ.get("FW_DEBUG", "") not in ("", "0", "false"):
            raise
        sys.stderr.write(f"fraudwatch: {line}\n")
        sys.exit(1)


def _stop_cleanly_on_sigterm() -> None:
    # Commands that start services stop them in ``finally`` blocks; SIGTERM must unwind, not just die.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))


def _instant_ms(text: str) -> int:
    """Epoch ms from an ISO 8601 time (UTC when it names no zone) or from a number of ms."""
    import datetime as dt

    if text.strip().isdigit():
        return int(text)
    try:
        when = dt.datetime.fromisoformat(text)
    except ValueError as exc:
        raise typer.BadParameter(f"{text!r} is neither an ISO 8601 time nor epoch ms") from exc
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return int(when.timestamp() * 1000)


def _print_json(obj: object) -> None:
    sys.stdout.write(orjson.dumps(obj, option=orjson.OPT_INDENT_2).decode() + "\n")


def _print_city(
    events: list[Any],
    cases: list[Any],
    responders: list[Any],
    meta: dict[str, Any],
    paths: dict[str, Path],
    per_scenario: bool = False,
) -> None:
    summary = {
        "events": len(events),
        "call_starts": meta["call_starts"],
        "police_reports": meta.get("police_reports", 0),
        "cases": len(cases),
        "cases_with_loss": meta["cases_with_loss"],
        "residents": meta["residents"],
        "responders": len(responders),
        **({"per_scenario": meta["per_scenario"]} if per_scenario else {}),
        "files": {k: str(v) for k, v in paths.items()},
    }
    _print_json(summary)


@app.command()
def simulate(
    out: Annotated[Path, typer.Option(help="Folder for events.jsonl, cases.jsonl, responders.jsonl")] = Path(
        "var/city"
    ),
    subscribers: int = 3000,
    days: float = 1.0,
    seed: int = 1,
    victims_per_10k_per_day: float = 12.0,
    signalling: Annotated[
        float,
        typer.Option(min=0.0, max=1.0, help="Share of answered calls signalled when they connect (call_start.v1)"),
    ] = 0.0,
    report_delay_days: Annotated[
        float | None,
        typer.Option(
            min=0.0,
            help="Put police reports in the stream (case.v1 with reported_ms), each this many days after its loss",
        ),
    ] = None,
) -> None:
    """Simulate a seeded city's calls, transfers, fraud cases and responders."""
    from sandbox.simulate import CityConfig, write_city
    from sandbox.simulate import simulate as run

    city = run(
        CityConfig(
            subscribers=subscribers,
            days=days,
            seed=seed,
            victims_per_10k_per_day=victims_per_10k_per_day,
            signalling=signalling,
            report_delay_days=report_delay_days,
        )
    )
    paths = write_city(city, out)  # city.json beside the files gives `evaluate` the number of residents
    _print_city(city.events, city.cases, city.responders, city.meta, paths)


@app.command("simulate-other")
def simulate_other(
    out: Annotated[Path, typer.Option(help="Folder for events.jsonl, cases.jsonl, responders.jsonl, city.json")] = Path(
        "var/other-city"
    ),
    residents: Annotated[int, typer.Option(min=50)] = 5000,
    days: Annotated[float, typer.Option(min=0.1)] = 3.0,
    seed: int = 1,
    victims_per_10k_per_day: Annotated[float, typer.Option(min=0.0)] = 12.0,
    signalling: Annotated[
        float,
        typer.Option(min=0.0, max=1.0, help="Share of answered calls signalled when they connect (call_start.v1)"),
    ] = 0.0,
) -> None:
    """Simulate a city with the independent second generator (other structure, look-alikes and scripts)."""
    from sandbox.othergen import OtherConfig, write_other_city
    from sandbox.othergen import simulate_other as run

    city = run(
        OtherConfig(
            residents=residents,
            days=days,
            seed=seed,
            victims_per_10k_per_day=victims_per_10k_per_day,
            signalling=signalling,
        )
    )
    paths = write_other_city(city, out)  # its city.json gives `evaluate` the residents
    _print_city(city.events, city.cases, city.responders, city.meta, paths, per_scenario=True)


@app.command()
def train(
    events: Annotated[Path | None, typer.Argument(help="events.jsonl (omit with --worlds)")] = None,
    cases: Annotated[
        Path | None, typer.Argument(help="cases.jsonl (omit with --worlds, or with --labels only)")
    ] = None,
    labels: Annotated[
        Path | None,
        typer.Option(help="Outcome labels (label.v1 JSONL dumped from the labels topic) beside or instead of CASES"),
    ] = None,
    reports: Annotated[
        Path | None,
        typer.Option(help="Police reports (case.v1 JSONL, cases with a loss) beside or instead of CASES"),
    ] = None,
    cutoff: Annotated[
        str | None,
        typer.Option(
            help="Train only on what was known then (ISO time or epoch ms): earlier events, labels resolved "
            "by it, reports made by it"
        ),
    ] = None,
    report_delay_days: Annotated[
        float, typer.Option(min=0.0, help="Days from a loss to its report, for reports without reported_ms")
    ] = 3.0,
    worlds: Annotated[
        int | None,
        typer.Option(min=1, help="Train on N sampled simulated worlds (sandbox/worlds.py) instead of files"),
    ] = None,
    world_seed: Annotated[int, typer.Option(help="Seed of the world sampler")] = 7,
    other_worlds: Annotated[
        int,
        typer.Option(
            min=0,
            help="With --worlds: N more worlds from the other generator (sandbox/othergen.py), same ranges "
            "[default 0; measured in issue #16's note: not yet better]",
        ),
    ] = 0,
    subscriber_days: Annotated[
        float | None,
        typer.Option(min=1.0, help="Subscriber-days of all worlds together [default: WorldRanges', 100000]"),
    ] = None,
    exclude_scenario: Annotated[
        list[str] | None, typer.Option(help="A scenario no training world has (repeatable)")
    ] = None,
    budget: Annotated[float | None, typer.Option(help="Face-to-face tasks per 10k subscribers per day")] = None,
    promote: bool = True,
    models: Annotated[
        int | None, typer.Option(min=1, help="Boosters (seeds) averaged into the model [default: TrainConfig's, 3]")
    ] = None,
    threshold_folds: Annotated[
        int | None,
        typer.Option(
            min=0,
            help="Pick thresholds on K subscriber folds' out-of-fold scores (0: held-out days) "
            "[default: TrainConfig's, 4]",
        ),
    ] = None,
) -> None:
    """Train a model on a simulated (or real) history, or on --worlds N sampled worlds, and register it;
    promote it by default."""
    from sandbox.training import train_from_files, train_on_worlds

    settings = get_settings()
    if worlds is not None:
        if events is not None or cases is not None or labels is not None or reports is not None:
            raise typer.BadParameter("give EVENTS and CASES (or --labels/--reports) or --worlds, not both")
        from sandbox.worlds import AnyWorld, WorldRanges, sample_other_worlds, sample_worlds

        ranges = WorldRanges() if subscriber_days is None else WorldRanges(subscriber_days=subscriber_days)
        excluded = exclude_scenario or []
        ours = sample_worlds(worlds, world_seed, ranges, exclude_scenarios=excluded)
        sampled: list[AnyWorld] = list(ours)
        if other_worlds:
            sampled += sample_other_worlds(other_worlds, world_seed, ranges, excluded, start_ms=ours[0].start_ms)
        version = train_on_worlds(
            sampled,
            settings,
            exclude_scenarios=excluded,
            budget=budget,
            promote=promote,
            n_models=models,
            threshold_folds=threshold_folds,
        )
    elif events is None or (cases is None and labels is None and reports is None):
        raise typer.BadParameter("give EVENTS and CASES (and/or --labels FILE, --reports FILE), or --worlds N")
    elif exclude_scenario or subscriber_days is not None:
        raise typer.BadParameter("--exclude-scenario and --subscriber-days go with --worlds")
    else:
        version = train_from_files(
            events,
            cases,
            settings,
            budget=budget,
            promote=promote,
            n_models=models,
            threshold_folds=threshold_folds,
            labels=labels,
            reports=reports,
            cutoff_ms=_instant_ms(cutoff) if cutoff is not None else None,
            report_delay_ms=int(report_delay_days * 86_400_000),
        )
    _print_json(
        {
            "version": version.version,
            "path": str(version.path),
            "metrics": version.meta["metrics"],
            "thresholds": version.meta["thresholds"],
            "threshold_info": version.meta.get("threshold_info"),
            "worlds": version.meta["data"].get("worlds"),
            "sources": version.meta["data"].get("sources"),
            "promoted": promote,
        }
    )


WarmupDays = Annotated[
    float,
    typer.Option(
        min=0.0,
        help="Compute features over all events but judge only what follows the first N days "
        "(cases first contacted in them are left out)",
    ),
]


@app.command()
def evaluate(
    events: Path,
    cases: Path,
    model: Annotated[str | None, typer.Option(help="A registry version or a model folder")] = None,
    budget: Annotated[float | None, typer.Option(help="Face-to-face tasks per 10k residents per day")] = None,
    warmup_days: WarmupDays = 0.0,
    residents: Annotated[
        int | None,
        typer.Option(
            help="People the service protects (default: city.json beside EVENTS, else FW_RESIDENTS, "
            "else distinct callees and payers seen)"
        ),
    ] = None,
    static_thresholds: Annotated[
        bool, typer.Option(help="Keep the model's thresholds fixed instead of following simulated outcomes")
    ] = False,
    outcome_delay_h: Annotated[
        float | None, typer.Option(help="Hours after a task its simulated outcome comes back (default 4)")
    ] = None,
) -> None:
    """Run the serving features and scorer over EVENTS offline and print the contract's JSON object.

    The thresholds follow the outcomes of the tasks as the service's do: a task for someone in no case comes
    back a false alarm OUTCOME_DELAY_H later.
    """
    from sandbox.training import evaluate_files

    result = evaluate_files(
        events,
        cases,
        get_settings(),
        model=model,
        budget=budget,
        warmup_days=warmup_days,
        residents=residents,
        static_thresholds=static_thresholds,
        outcome_delay_h=outcome_delay_h,
    )
    _print_json(result)


@app.command()
def replay(
    events: Path,
    rate: Annotated[float | None, typer.Option(help="Events per second (default: as fast as possible)")] = None,
    speedup: Annotated[float | None, typer.Option(help="Replay event time this many times faster than real")] = None,
) -> None:
    """Produce the events of a .jsonl file onto the broker's input topics."""
    from streams import ensure_topics
    from streams import replay_events as run

    settings = get_settings()
    if not settings.broker_url:
        raise typer.BadParameter("set FW_BROKER_URL (kafka://host:port) to replay onto a broker")

    async def go() -> None:
        await ensure_topics(settings)
        stats = await run(events, settings, rate, speedup)
        _print_json(
            {
                "sent": stats.sent,
                "calls": stats.calls,
                "transfers": stats.transfers,
                "call_starts": stats.call_starts,
                "reports": stats.reports,
                "unroutable": stats.unroutable,
                "seconds": round(stats.seconds, 3),
                "events_per_s": round(stats.rate, 1),
            }
        )

    asyncio.run(go())


@app.command()
def seed_state(events: Path) -> None:
    """Build the feature state of a history (a .jsonl of events) offline and write it into a new deployment's
    empty changelogs, before its first worker starts: a week of callers' and payees' history in seconds."""
    from features import FeatureEngine
    from models import load_events
    from streams import ensure_topics, seed_tables

    settings = get_settings()
    if not settings.broker_url:
        raise typer.BadParameter("set FW_BROKER_URL (kafka://host:port) to seed a deployment's state")
    loaded = load_events(events)
    engine = FeatureEngine()
    rows = sum(1 for _ in engine.run(loaded.events))

    async def go() -> None:
        await ensure_topics(settings)
        stats = await seed_tables(settings, engine.key_states(), engine.subscribers)
        _print_json(
            {
                "events": len(loaded.events),
                "rejected_lines": loaded.rejected,
                "rows": rows,
                "caller_table_records": stats.caller_records,
                "subscriber_table_records": stats.subscriber_records,
            }
        )

    asyncio.run(go())


@app.command()
def worker() -> None:
    """Run one stream worker (needs FW_BROKER_URL and FW_REDIS_URL)."""
    from core.logs import configure, dict_config

    settings = get_settings()
    if not settings.broker_url or not settings.redis_url:
        raise typer.BadParameter("a worker needs FW_BROKER_URL and FW_REDIS_URL; `fraudwatch run` starts both")
    configure(settings.log_level)
    if settings.uvloop:
        import uvloop

        uvloop.install()  # before Faust creates its loops (main and consumer thread)
    from faust import Worker

    from streams import build_worker, watch_gc_pauses

    if settings.gc_gen0_threshold:
        # Feature state is hundreds of thousands of small long-lived containers; the default young
        # threshold (700) made the cyclic GC rescan them often (~10% of worker time). Imports, model and
        # app objects are frozen out of the collector's view entirely.
        gc.collect()
        gc.freeze()
        gc.set_threshold(settings.gc_gen0_threshold, 20, 50)
    watch_gc_pauses()

    # The consumer runs in its own thread and alert explanations in another: a shorter GIL switch
    # interval hands them the GIL sooner while the agents compute, which trims the latency tail.
    sys.setswitchinterval(settings.gil_switch_interval_s)
    sys.argv = [sys.argv[0]]
    worker = Worker(
        build_worker(settings).app,
        loglevel=settings.log_level,
        quiet=True,
        logging_config=dict_config(settings.log_level),
    )
    # No terminal spinner in a service: at WARNING and above Faust would otherwise hook it to the root
    # logger and lower the root to DEBUG, so every debug call in aiokafka/httpcore built a record per message.
    worker.spinner = None
    worker.execute_from_commandline()


@app.command()
def dispatch(
    host: Annotated[str | None, typer.Option(help="Listen address (default FW_CONSOLE_HOST)")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default FW_CONSOLE_PORT; 0 = any free port)")] = None,
) -> None:
    """Run one dispatch service replica: console, responder API and app, ack watcher, label publisher
    (needs FW_REDIS_URL; with FW_BROKER_URL the labels go to the labels topic)."""
    from core.logs import configure

    settings = get_settings()
    if not settings.redis_url:
        raise typer.BadParameter("the dispatch service needs FW_REDIS_URL; `fraudwatch run` starts one")
    configure(settings.log_level)

    async def go() -> None:
        from alerting import DispatchService
        from streams import TopicPublisher

        publisher = TopicPublisher(settings.broker_url, settings.labels_topic) if settings.broker_url else None
        service = DispatchService(settings, label_sink=publisher)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        url = await service.start(host, port)
        sys.stdout.write(f"dispatch service at {url}/ (responder app {url}/app/)\n")
        sys.stdout.flush()
        try:
            await stop.wait()
        finally:
            await service.stop()
            if publisher is not None:
                await publisher.stop()

    asyncio.run(go())


@app.command()
def run(
    subscribers: int = 3000,
    days: Annotated[float, typer.Option(help="Judged days: the summary counts only these")] = 2.0,
    history_days: Annotated[
        float,
        typer.Option(min=0.0, help="Days of the same city replayed first, unpaced, to build the state (a week)"),
    ] = 7.0,
    seed: int = 101,
    replay_seconds: Annotated[float, typer.Option(help="Compress the simulated days into this many seconds")] = 60.0,
    hold: Annotated[bool, typer.Option(help="Keep the dispatch console up after the summary, until Ctrl-C")] = False,
    console_port: Annotated[int, typer.Option(help="Port of the dispatch console (0 = any free port)")] = 0,
    signalling: Annotated[
        float,
        typer.Option(min=0.0, max=1.0, help="Share of answered calls signalled when they connect (0: no feed)"),
    ] = 1.0,
    history_mode: Annotated[
        str,
        typer.Option(help="seed: build the history offline (as a real week would be); replay: through the worker"),
    ] = "seed",
) -> None:
    """The whole service on loopback: broker, Redis, a simulated city (days of history, then the judged days),
    a model, a worker, a dispatch receiver."""
    from sandbox.demo import DemoConfig, run_demo

    _stop_cleanly_on_sigterm()
    config = DemoConfig(
        subscribers=subscribers,
        days=days,
        history_days=history_days,
        seed=seed,
        replay_seconds=replay_seconds,
        hold=hold,
        console_port=console_port,
        signalling=signalling,
        history_mode="replay" if history_mode == "replay" else "seed",
    )
    if history_mode not in ("seed", "replay"):
        raise typer.BadParameter("--history-mode is seed or replay")
    summary = run_demo(get_settings(), config)
    if not hold:  # with --hold the summary was printed before the wait
        _print_json(summary)


@app.command()
def generalise(
    quick: Annotated[bool, typer.Option(help="Tiny cities: proves the machinery in well under a minute")] = False,
    train_subscribers: Annotated[int | None, typer.Option(min=50, help="Residents of the training city")] = None,
    train_days: Annotated[float | None, typer.Option(min=1.0, help="Days of the training city")] = None,
    train_seed: Annotated[int | None, typer.Option(help="Seed of the training city")] = None,
    judge_seed: Annotated[int | None, typer.Option(help="Seed of the held-out city (same size)")] = None,
    large_subscribers: Annotated[int | None, typer.Option(min=50, help="Residents of the large judged city")] = None,
    large_seed: Annotated[int | None, typer.Option(help="Seed of the large judged city")] = None,
    models: Annotated[int | None, typer.Option(min=1, help="Boosters per model [default 1; the service's: 3]")] = None,
    threshold_folds: Annotated[
        int | None, typer.Option(min=0, help="Subscriber folds for the thresholds [default 0; the service's: 4]")
    ] = None,
    scenario: Annotated[
        list[str] | None, typer.Option(help="Leave out only these scenarios (repeatable) [default: every one]")
    ] = None,
    worlds: Annotated[
        int | None,
        typer.Option(min=0, help="Train on N sampled worlds of the training city's subscriber-days [default 0: one]"),
    ] = None,
    other_worlds: Annotated[
        int | None,
        typer.Option(min=0, help="N more training worlds from the other generator (its judged cities then met it)"),
    ] = None,
    per_scenario_cities: Annotated[
        bool, typer.Option(help="Judge each left-out scenario on a held-out city of its own cases only")
    ] = True,
    out: Annotated[
        Path | None, typer.Option(help="Result JSON [default: DATA_DIR/artifacts/generalisation.json]")
    ] = None,
) -> None:
    """Leave-one-scenario-out and small-to-large cities at the model's own thresholds; table on stderr, JSON out."""
    import dataclasses

    from sandbox.protocol import ProtocolConfig, format_table, run_protocol
    from sandbox.simulate import SCENARIOS

    config = ProtocolConfig.quick() if quick else ProtocolConfig()
    unknown = sorted(set(scenario or ()) - set(SCENARIOS))
    if unknown:
        raise typer.BadParameter(f"unknown scenario(s) {unknown}; the simulator has {list(SCENARIOS)}")
    given: dict[str, object] = {
        "train_subscribers": train_subscribers,
        "train_days": train_days,
        "train_seed": train_seed,
        "judge_seed": judge_seed,
        "large_subscribers": large_subscribers,
        "large_seed": large_seed,
        "n_models": models,
        "threshold_folds": threshold_folds,
        "scenarios": tuple(scenario) if scenario else None,
        "worlds": worlds,
        "other_worlds": other_worlds,
        "judge_per_scenario": per_scenario_cities,
    }
    config = dataclasses.replace(config, **{k: v for k, v in given.items() if v is not None})  # type: ignore[arg-type]
    result = run_protocol(get_settings(), config, out=out)
    sys.stderr.write("\n".join(format_table(result)) + "\n")
    _print_json(result)


@app.command("field-trial")
def field_trial(
    events: Annotated[Path, typer.Argument(help="The city's events.jsonl, from its first day")],
    cases: Annotated[Path, typer.Argument(help="Its cases.jsonl: outcomes and police reports come from it, delayed")],
    model: Annotated[
        str | None, typer.Option(help="The shipped model (version or folder) [default: the live one]")
    ] = None,
    week_days: Annotated[float, typer.Option(min=1.0, help="Days between retrains")] = 7.0,
    outcome_delay_h: Annotated[float, typer.Option(min=0.0, help="Hours from a task to its outcome")] = 4.0,
    report_delay_days: Annotated[float, typer.Option(min=0.0, help="Days from a loss to its police report")] = 3.0,
    field_weight: Annotated[float, typer.Option(min=0.0, help="Weight of a field row against a simulated one")] = 3.0,
    slice_folds: Annotated[int, typer.Option(min=2, help="1 of K subscriber folds is the promotion slice")] = 4,
    max_field_rows: Annotated[
        int, typer.Option(min=1000, help="Field rows per retrain at most (a big city thinned by subscriber)")
    ] = 2_000_000,
    worlds: Annotated[
        int | None,
        typer.Option(min=1, help="Sample N training worlds [default: the shipped model's own worlds]"),
    ] = None,
    world_seed: Annotated[int, typer.Option(help="Seed of the world sampler (with --worlds)")] = 7,
    subscriber_days: Annotated[
        float | None, typer.Option(min=1.0, help="Subscriber-days of the sampled worlds (with --worlds)")
    ] = None,
    residents: Annotated[int | None, typer.Option(min=1, help="The city's residents [default: its city.json]")] = None,
    models: Annotated[int, typer.Option(min=1, help="Boosters per retrained model")] = 1,
    threshold_folds: Annotated[int, typer.Option(min=0, help="Subscriber folds for its thresholds")] = 0,
    handover: Annotated[
        Literal["match", "carry", "own"],
        typer.Option(help="A promoted model's first thresholds: the live alert volume, the live offset, or its own"),
    ] = "match",
) -> None:
    """Serve a city from its first day with the shipped model, retrain every week on its outcomes and police
    reports, promote only what beats the live model on a held-out slice; per-week table on stderr, JSON out."""
    from models import field_trial_table
    from sandbox.field_trial import TrialConfig, field_trial_files

    settings = get_settings()
    sampled = None
    if worlds is not None:
        from sandbox.worlds import WorldRanges, sample_worlds

        ranges = WorldRanges() if subscriber_days is None else WorldRanges(subscriber_days=subscriber_days)
        sampled = sample_worlds(worlds, world_seed, ranges)
    elif subscriber_days is not None:
        raise typer.BadParameter("--subscriber-days goes with --worlds")
    config = TrialConfig(
        week_days=week_days,
        outcome_delay_h=outcome_delay_h,
        report_delay_days=report_delay_days,
        field_weight=field_weight,
        slice_folds=slice_folds,
        max_field_rows=max_field_rows,
        n_models=models,
        threshold_folds=threshold_folds,
        handover=handover,
    )

    def say(message: str) -> None:
        sys.stderr.write(message + "\n")

    result = field_trial_files(events, cases, settings, config, model, sampled, residents, say=say)
    sys.stderr.write("\n".join(field_trial_table(result)) + "\n")
    _print_json(result)


@app.command()
def benchmark(
    tiny: Annotated[bool, typer.Option(help="Seconds-long run that only proves the machinery works")] = False,
) -> None:
    """Throughput, latency and baselines of a real worker on the embedded broker; prints one JSON object."""
    from sandbox.benchmark import BenchConfig, run_benchmark

    _stop_cleanly_on_sigterm()
    _print_json(run_benchmark(get_settings(), BenchConfig.tiny() if tiny else BenchConfig()))


@app.command()
def soak(
    minutes: Annotated[float, typer.Option(min=0.01, help="How long to offer events")] = 10.0,
    rate: Annotated[float, typer.Option(min=0.1, help="Events per second offered, at a fixed pace")] = 300.0,
    sample_s: Annotated[float, typer.Option(min=0.5, help="Seconds between sample lines")] = 10.0,
    keys: Annotated[
        int, typer.Option(min=0, help="Feature-state keys in the tables before the worker starts (city scale)")
    ] = 0,
    recover: Annotated[
        bool, typer.Option(help="At the end, kill the worker -9 and time a new one back to ready with every key")
    ] = False,
    days_per_city: Annotated[
        float, typer.Option(min=0.01, help="Event-time days per simulated city (filled keys live a week)")
    ] = 1.0,
    store: Annotated[
        str | None, typer.Option(help="Feature state in 'memory' or on 'local' disk (default: FW_STATE_STORE)")
    ] = None,
) -> None:
    """One worker under a steady load: a JSON line per sample (RSS, p50/p99, lag, keys), then a summary with slopes."""
    from sandbox.soak import SoakConfig, run_soak

    _stop_cleanly_on_sigterm()
    run_soak(
        get_settings(),
        SoakConfig(
            minutes=minutes,
            rate=rate,
            sample_s=sample_s,
            keys=keys,
            recover=recover,
            days_per_city=days_per_city,
            store=_state_store(store),
        ),
    )


def _state_store(value: str | None) -> Literal["memory", "local"] | None:
    if value is None or value in ("memory", "local"):
        return value  # type: ignore[return-value]
    raise typer.BadParameter(f"--store must be memory or local, not {value!r}")


@models_app.command("list")
def models_list() -> None:
    """Every registered version with its metrics; the promoted one is marked."""
    from models import ModelRegistry

    registry = ModelRegistry(get_settings().models_path)
    promoted = registry.promoted_version()
    _print_json(
        [
            {
                "version": v.version,
                "promoted": v.version == promoted,
                "features_hash": v.meta["features_hash"],
                # Where its labels came from: simulated worlds, a cases file, field outcomes, police reports.
                "sources": (v.meta.get("data") or {}).get("sources")
                or {"simulated": (v.meta.get("data") or {}).get("source", "files")},
                "data": v.meta.get("data"),
                "metrics": v.meta.get("metrics"),
            }
            for v in registry.versions()
        ]
    )


def _sources(data: dict[str, object]) -> object:
    """A version's label sources: its recorded ones, else what its data says it was trained on."""
    return data.get("sources") or {"trained_on": data.get("source", "files")}


@models_app.command("promote")
def models_promote(version: str) -> None:
    """Make VERSION the live model; running workers switch at their next poll."""
    from models import ModelRegistry

    ModelRegistry(get_settings().models_path).promote(version)
    _print_json({"promoted": version})


@models_app.command("shadow")
def models_shadow(
    version: Annotated[str | None, typer.Argument(help="Version to score in shadow; omit to stop")] = None,
) -> None:
    """Score VERSION beside the live model in running workers; its decisions are logged, never acted on."""
    from models import ModelRegistry

    ModelRegistry(get_settings().models_path).set_shadow(version)
    _print_json({"shadow": version})


@models_app.command("compile")
def models_compile(version: str) -> None:
    """Compile VERSION with lleaves (cached next to it); workers use it at their next model load."""
    from models import ModelRegistry, compile_version

    path = compile_version(ModelRegistry(get_settings().models_path).get(version))
    _print_json({"version": version, "compiled": str(path)})


@models_app.command("card")
def models_card(
    version: Annotated[str, typer.Argument(help="A registry version or a model folder")],
    events: Path,
    cases: Path,
    budget: Annotated[float | None, typer.Option(help="Face-to-face tasks per 10k subscribers per day")] = None,
    out: Annotated[Path | None, typer.Option(help="Folder for the card (default: the model's folder)")] = None,
    warmup_days: WarmupDays = 0.0,
) -> None:
    """Evaluate VERSION on EVENTS/CASES and write its model card (card.md and plots); print the card's path."""
    from sandbox.training import resolve_model, write_card_for

    settings = get_settings()
    model = resolve_model(settings, version)
    card = write_card_for(model, events, cases, settings, budget=budget, out_dir=out, warmup_days=warmup_days)
    sys.stdout.write(f"{card}\n")


@models_app.command("rollback")
def models_rollback() -> None:
    """Go back to the previously promoted version."""
    from models import ModelRegistry

    _print_json({"promoted": ModelRegistry(get_settings().models_path).rollback()})


if __name__ == "__main__":
    main()
