"""The one settings object, in sections per concern. Every value comes from an environment variable prefixed ``FW_``.

The sections are plain models that :class:`Settings` combines, so every field keeps its flat ``FW_*`` name (the
names ``deploy/`` and the README use) while the source groups them by the part of the service they steer.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from core.levels import Action, default_actions, level_numbers

__all__ = [
    "ConsoleSettings",
    "DecisionSettings",
    "DeliverySettings",
    "EscalationSettings",
    "PrivacySettings",
    "ServiceSettings",
    "Settings",
    "TopicSettings",
    "WorkerSettings",
    "get_settings",
]


class ServiceSettings(BaseModel):
    """Where the service's parts are: its data folder, the broker, Redis and the dispatch endpoint."""

    data_dir: Path = Field(Path("var"), description="Where simulated data, models and service state live.")
    broker_url: str | None = Field(
        None, description="kafka://host:port of a Kafka-API broker; unset = start the embedded Tansu broker."
    )
    redis_url: str | None = Field(None, description="redis://host:port/db; unset = start an embedded redis-server.")
    dispatch_url: str | None = Field(
        None, description="Where task.v1 JSON is POSTed; unset = the local stand-in receiver of the demo."
    )
    bank_url: str | None = Field(
        None,
        description="Where hold.v1 JSON (hold, release, cancel) is POSTed to the payers' bank; unset = holds are "
        "still recorded and published on holds_topic, but not POSTed.",
    )


class TopicSettings(BaseModel):
    """The app id (consumer group, internal topic prefix), partition count and topic names."""

    app_id: str = "fraudwatch"
    partitions: int = Field(4, ge=1, description="Partitions of every input topic and table (must all match).")
    calls_topic: str = "calls.v1"
    transfers_topic: str = "transfers.v1"
    call_starts_topic: str = Field("call-starts.v1", description="Signalling (call_start.v1); may stay empty.")
    reports_topic: str = Field(
        "police-reports.v1", description="Police reports (case.v1 with reported_ms); may stay empty."
    )
    caller_calls_topic: str = "calls-by-caller.v1"
    enriched_calls_topic: str = "calls-enriched.v1"
    pending_alerts_topic: str = "alerts-pending.v1"
    dead_letter_topic: str = "events.dlq"
    tasks_topic: str = "tasks.v1"
    holds_topic: str = "holds.v1"
    labels_topic: str = "labels.v1"


class WorkerSettings(BaseModel):
    """How a stream worker consumes, batches, produces and serves its web port."""

    broker_session_timeout_s: float = Field(6.0, description="Short, so a Tansu group join takes seconds.")
    broker_heartbeat_interval_s: float = 1.0
    worker_web_bind: str = Field("127.0.0.1", description="Interface of the worker's web port; 0.0.0.0 in pods.")
    worker_web_port: int = Field(6066, description="Faust web port: /metrics, /healthz, /readyz.")
    consumer_fetch_max_wait_ms: int = Field(
        20, ge=1, description="Longest a consumer fetch waits for data; Faust's fixed 1.5 s adds latency per hop."
    )
    producer_linger_s: float = Field(
        0.002, ge=0, description="How long the producer gathers messages into one request (fewer, larger writes)."
    )
    uvloop: bool = Field(True, description="Run the worker on uvloop (a faster event loop; sockets and callbacks).")
    gc_gen0_threshold: int = Field(
        20_000, ge=0, description="Worker's gen-0 GC threshold (Python's default is 700; 0 leaves GC untouched)."
    )
    state_cache_keys: int = Field(
        5_000,
        ge=0,
        description="Feature states per table kept decoded (the most recently used); the others stay as their "
        "stored bytes, about 0.5 KB a key against 11-14 KB decoded.",
    )
    state_store: Literal["memory", "local"] = Field(
        "memory",
        description="Where feature state lives: memory (rebuilt from the changelog at every start) or local "
        "(RocksDB under state_dir: a restart reads only the changelog after what it holds; one state_dir per "
        "worker).",
    )
    state_dir: Path | None = Field(None, description="The local store's folder; default data_dir/state.")
    state_block_cache_mb: int = Field(64, ge=1, description="The local store's block cache, shared by its tables.")
    state_write_buffer_mb: int = Field(4, ge=1, description="Memtable size of each local table partition.")
    table_standby_replicas: int = Field(
        0,
        ge=0,
        description="Standby copies of each table partition on other workers (Faust's default is 1): faster "
        "fail-over, but each worker then decodes every changelog record of the others' partitions.",
    )
    gil_switch_interval_s: float = Field(
        0.0005, gt=0, description="Worker's sys.setswitchinterval (Python's default 0.005 s); see fraudwatch.cli."
    )
    publish_features: bool = Field(
        False, description="Also publish every feature row to <app_id>.features (audits, training-serving checks)."
    )
    score_batch_max: int = Field(200, ge=1, description="Most events scored in one model call.")
    score_batch_wait_s: float = Field(
        0.02,
        gt=0,
        description="Longest an event waits for its batch to fill, at each hop. Longer windows make fewer, larger "
        "batches: at 1,000 events/s offered, 0.02 s halved event-to-decision p50 and p99 against 0.005 s (a batch's "
        "fixed cost, not its events, had filled the worker); at 250/s it added about 20 ms to p50 (RUNBOOK).",
    )
    max_event_bytes: int = Field(16_384, description="Larger messages are dead-lettered as oversized.")
    tick_idle_s: float = Field(
        10.0,
        gt=0,
        description="A subscriber partition without events this long (wall clock) has its open calls' due ticks "
        "fired at the newest event time of the worker's other partitions, so idle partitions do not stall them.",
    )


class DecisionSettings(BaseModel):
    """Models (registry, compilation, reloads), the task budget and what each risk level does."""

    model_dir: Path | None = Field(None, description="Model registry folder; default data_dir/models.")
    compile_models: bool = Field(True, description="Compile each trained model with lleaves (cached per version).")
    model_reload_s: float = Field(10.0, description="How often a worker checks the registry for a promoted model.")
    budget_tasks_per_10k_per_day: float = Field(
        1.0, description="Face-to-face tasks the responders can make per 10,000 subscribers per day."
    )
    level_actions: dict[int, Action] = Field(
        default_factory=default_actions,
        description="What each risk level does: an SMS/in-app warning record, a call-centre task, or a "
        'face-to-face dissuasion task with the nearest available responder (JSON, e.g. {"2": "none"}); '
        "a level left out keeps its action from core/levels.py.",
    )
    episode_ms: int = Field(24 * 3600 * 1000, description="One case per subscriber per episode of this length.")
    repeats_per_case: int = Field(
        6,
        ge=0,
        description="Warnings and call-centre calls a case may repeat for new calls or transfers of its episode "
        "(0: one action per case and level).",
    )
    budget_holds_per_10k_per_day: float = Field(
        2.0,
        ge=0,
        description="False payment holds (on transfers of people who are no victim) per 10,000 residents per day "
        "that training spends on the hold threshold.",
    )
    hold_expiry_s: float = Field(
        4 * 3600.0, gt=0, description="A hold nobody releases or cancels lapses this long after its transfer."
    )
    hold_sweep_s: float = Field(30.0, gt=0, description="How often a worker marks its expired holds lapsed.")
    residents: int = Field(
        0,
        ge=0,
        description="People the service protects (the budget is per 10k of them); 0 = estimate from the distinct "
        "subscribers seen, which counts outsiders called by residents too and so overstates them.",
    )
    budget_follow: bool = Field(
        True, description="Let each level's threshold follow the responders' outcomes (models/feedback.py)."
    )
    budget_update_s: float = Field(30.0, gt=0, description="How often a worker refits the followed thresholds.")
    budget_window_visits: float = Field(
        5.0, gt=0, description="A level's window holds this many false alerts at its budget (1 to 7 days)."
    )
    budget_min_span_h: float = Field(
        1.0, ge=0, description="Traffic the window must hold before the thresholds move off the model's own."
    )
    budget_logit_down_per_day: float = Field(
        1.0, ge=0, description="How fast an underspent level lowers its threshold, in log-odds per day."
    )
    budget_logit_up: float = Field(
        10.0, ge=0, description="Highest a threshold may move above the model's, in log-odds."
    )
    budget_logit_down: float = Field(
        2.0, ge=0, description="Lowest a threshold may move below the model's, in log-odds."
    )
    budget_aim: float = Field(0.8, gt=0, le=1, description="Share of each level's budget of false alerts to spend.")
    budget_prior_false_share: float = Field(
        0.5, ge=0, le=1, description="False-alarm share assumed before outcomes come back."
    )
    budget_prior_weight: float = Field(0.5, ge=0, description="Outcomes it takes to outweigh that prior.")

    @field_validator("level_actions")
    @classmethod
    def _known_levels(cls, value: dict[int, Action]) -> dict[int, Action]:
        unknown = sorted(set(value) - set(level_numbers()))
        if unknown:  # a typo here would otherwise silently leave a level on its default action
            raise ValueError(f"FW_LEVEL_ACTIONS names unknown levels {unknown}; levels are {list(level_numbers())}")
        return value


class DeliverySettings(BaseModel):
    """Outbox delivery over HTTP and the choice of responder."""

    delivery_timeout_s: float = 5.0
    delivery_max_attempts: int = Field(
        400,
        ge=1,
        description="Attempts before a task that keeps failing with a retryable error is dead-lettered: with the "
        "10 s backoff cap about an hour, so an endpoint down for minutes delays tasks instead of losing them.",
    )
    delivery_backoff_base_s: float = 0.2
    delivery_backoff_max_s: float = 10.0
    responder_search_radii_km: tuple[float, ...] = (2.0, 5.0, 10.0, 25.0, 100.0)
    responder_stale_s: float = Field(
        300.0, gt=0, description="A responder whose last heartbeat (or roster load) is older is not assigned."
    )


class EscalationSettings(BaseModel):
    """Acknowledgement deadlines and escalation to a supervisor."""

    ack_deadline_s: float = Field(
        120.0, gt=0, description="An assigned task not acknowledged within this is reassigned and escalated."
    )
    ack_check_interval_s: float = Field(5.0, gt=0, description="How often the acknowledgement watcher looks.")
    supervisor_url: str | None = Field(
        None, description="Where escalation JSON is POSTed when a task misses its ack deadline; unset = log only."
    )
    supervisor_timeout_s: float = Field(5.0, gt=0, description="HTTP timeout of one escalation POST.")


class ConsoleSettings(BaseModel):
    """The dispatch service (console, responder API and app): address, tokens, tickets, request limits."""

    console_host: str = Field("127.0.0.1", description="Where `fraudwatch dispatch` listens (0.0.0.0 in a container).")
    console_port: int = Field(8090, ge=0, le=65535, description="Its port (0 = any free port, printed at start).")
    ack_watch: bool = Field(True, description="Run the acknowledgement watcher (escalation) in the dispatch service.")
    label_claim_idle_s: float = Field(
        30.0,
        gt=0,
        description="A label read but not acknowledged by a dispatch replica for this long is taken over by another "
        "(the first one died mid-publish).",
    )

    console_tokens_file: Path | None = Field(
        None,
        description='JSON {token: {"role": dispatcher|responder|admin, "name": ..., "responder_id": ...}}; '
        "unset = the console refuses every API call.",
    )
    console_ticket_key: SecretStr | None = Field(
        None, description="HMAC key of the console's SSE tickets; unset = a random key per console process."
    )
    console_ticket_ttl_s: float = Field(60.0, gt=0, description="Lifetime of one SSE ticket.")
    console_max_body_bytes: int = Field(16_384, ge=1024, description="Larger console request bodies get 413.")
    console_body_timeout_s: float = Field(
        10.0,
        gt=0,
        description="A console request body not fully received within this time gets 408 and the connection is "
        "closed (a client that sends headers, then stalls or drips its body, would otherwise hold a handler).",
    )
    console_responder_rate_per_s: float = Field(
        2.0, gt=0, description="Sustained request rate allowed per responder token (token bucket refill)."
    )
    console_responder_burst: int = Field(20, ge=1, description="Burst size of a responder token's bucket.")


class PrivacySettings(BaseModel):
    """Pseudonyms of personal data in logs and metrics, and the log level."""

    pseudonym_key: SecretStr = Field(
        SecretStr("dev-only-pseudonym-key"), description="HMAC key for phone/account pseudonyms in logs and metrics."
    )
    log_level: str = "INFO"


class Settings(
    ServiceSettings,
    TopicSettings,
    WorkerSettings,
    DecisionSettings,
    DeliverySettings,
    EscalationSettings,
    ConsoleSettings,
    PrivacySettings,
    BaseSettings,
):
    """Service configuration, one section per concern (the classes above); frozen so no component can change
    it under another's feet. Each field is read from ``FW_<FIELD NAME>``."""

    model_config = SettingsConfigDict(env_prefix="FW_", frozen=True, extra="ignore")

    @property
    def models_path(self) -> Path:
        """The model registry folder."""
        return self.model_dir if self.model_dir is not None else self.data_dir / "models"

    @property
    def state_path(self) -> Path:
        """The local state store's folder (``state_store=local``)."""
        return self.state_dir if self.state_dir is not None else self.data_dir / "state"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once from the environment."""
    return Settings()
