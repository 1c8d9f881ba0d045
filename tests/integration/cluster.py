"""A harness for reliability tests: real worker processes around one broker, one Redis and one receiver.

A test builds a :class:`Feed` (its own input and dead-letter topics), one :class:`Cluster` per app id
(workers started, killed and restarted with given env), replays events onto the feed with
:class:`PacedReplay` (which reports progress, so a fault lands at a known point), waits until the cluster
has settled and compares what reached the :class:`TaskReceiver` with a reference run.

"Settled" does not read the consumer group's committed offsets: Faust commits lag far behind processing
(its commit takes one run of consecutive acked offsets per round), so they are a poor signal. Instead every
worker publishes each scored event's feature row (``FW_PUBLISH_FEATURES``): all valid event ids present
there, an empty outbox and a receiver holding every created task is the end of a run, and the feature rows
are also the proof that no valid event went unscored.

Everything here is async: the receiver runs in the test's own event loop and must keep answering.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
from aiohttp import web
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from redis.asyncio import Redis

from alerting import keys as redis_keys
from alerting.receiver import Receiver, ReceiverServer
from alerting.responders import ResponderRegistry
from fraudwatch.demo import scrape, total
from fraudwatch.services import free_port
from fraudwatch.settings import Settings
from streams.replay import load_lines
from streams.topics import bootstrap, ensure_topics, internal_topic

WORKER_READY_S = 90.0


async def wait_until(
    predicate: Callable[[], Awaitable[bool]], timeout_s: float, what: str, interval_s: float = 0.5
) -> float:
    """Poll ``predicate`` until it is true; the seconds it took. Raises AssertionError on timeout."""
    started = time.monotonic()
    while True:
        if await predicate():
            return time.monotonic() - started
        if time.monotonic() - started > timeout_s:
            raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        await asyncio.sleep(interval_s)


# --------------------------------------------------------------------------------------------- receiver


class TaskReceiver(Receiver):
    """The stand-in dispatch endpoint, plus a log of every POST it answered and a slow mode.

    ``posts`` maps an idempotency key to the task ids POSTed under it (one entry per request that got past
    injected failures): a repeat of the same task id is a redelivery the endpoint deduplicates; two different
    task ids under one key would mean the service created the same task twice.
    """

    def __init__(self) -> None:
        super().__init__()
        self.posts: dict[str, list[str]] = defaultdict(list)
        self._slow_next = 0
        self._slow_s = 0.0
        self.slowed = 0

    def slow_next(self, n: int, seconds: float) -> None:
        """Make the next ``n`` successful POSTs answer only after ``seconds``: the task is stored first, so
        a client that times out meanwhile does not know it was (the case idempotency keys are for)."""
        self._slow_next, self._slow_s = n, seconds

    async def post_task(self, request: web.Request) -> web.Response:
        response = await super().post_task(request)
        if response.status in (200, 201):
            body = orjson.loads(await request.read())  # aiohttp caches the body: no second read of the wire
            key = request.headers.get("Idempotency-Key") or str(body["idempotency_key"])
            self.posts[key].append(str(body["task_id"]))
            if self._slow_next > 0:
                self._slow_next -= 1
                self.slowed += 1
                await asyncio.sleep(self._slow_s)  # aiohttp cancels this when the client gives up
        return response

    def task_keys(self) -> list[str]:
        """Idempotency keys of the stored tasks, in arrival order."""
        return [str(t["idempotency_key"]) for t in self.tasks]

    def doubled(self) -> dict[str, set[str]]:
        """Keys that arrived under more than one task id: the same case and level tasked twice."""
        return {k: set(ids) for k, ids in self.posts.items() if len(set(ids)) > 1}


async def start_receiver() -> tuple[ReceiverServer, TaskReceiver]:
    """A started receiver server and its (counting) receiver."""
    receiver = TaskReceiver()
    server = ReceiverServer(receiver)
    await server.start()
    return server, receiver


# ------------------------------------------------------------------------------------------------ kafka


async def end_offsets(
    consumer: AIOKafkaConsumer, tps: list[TopicPartition], timeout_s: float = 5.0
) -> dict[TopicPartition, int]:
    """The end (high watermark) of each partition, read from a fetch response.

    Tansu 0.6.0 answers ListOffsets(latest) with the last record batch's base offset + 1, short of the end
    whenever that batch holds more than one record; a fetch response's high watermark is right. So seek to
    the listed offset - 1 (inside the last batch) and fetch once.
    """
    listed = await consumer.end_offsets(tps)
    consumer.assign(tps)
    for tp in tps:
        consumer.seek(tp, max(listed[tp] - 1, 0))
    deadline = time.monotonic() + timeout_s
    while any(consumer.highwater(tp) is None for tp in tps) and time.monotonic() < deadline:
        await consumer.getmany(*tps, timeout_ms=200)
    return {tp: max(listed[tp], consumer.highwater(tp) or 0) for tp in tps}


async def read_topic(broker_url: str, topic: str, timeout_s: float = 30.0) -> list[bytes]:
    """Every value of a topic, from its start to its end as of now (nothing if it does not exist)."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap(broker_url), group_id=None, enable_auto_commit=False, request_timeout_ms=10_000
    )
    await consumer.start()
    out: list[bytes] = []
    try:
        await consumer.topics()  # a fresh consumer knows no topic's partitions until it asks
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        if not tps:
            return out
        ends = await end_offsets(consumer, tps)
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        deadline = time.monotonic() + timeout_s
        while [tp for tp in tps if await consumer.position(tp) < ends[tp]]:
            assert time.monotonic() < deadline, f"could not read {topic} to its end in {timeout_s} s"
            for tp, records in (await consumer.getmany(timeout_ms=500)).items():
                out.extend(r.value for r in records if r.value is not None and r.offset < ends[tp])
    finally:
        await consumer.stop()
    return out


@dataclass(frozen=True)
class Feed:
    """The input, dead-letter and output topic names of one test, on one broker."""

    prefix: str
    broker_url: str

    def topics(self) -> dict[str, str]:
        """Settings field -> topic name."""
        p = self.prefix
        return {
            "calls_topic": f"{p}.calls.v1",
            "transfers_topic": f"{p}.transfers.v1",
            "dead_letter_topic": f"{p}.events.dlq",
            "tasks_topic": f"{p}.tasks.v1",
            "labels_topic": f"{p}.labels.v1",
        }

    def env(self) -> dict[str, str]:
        """The same names as FW_* variables for a worker."""
        return {f"FW_{name.upper()}": topic for name, topic in self.topics().items()}

    def settings(self) -> Settings:
        """Settings for producing onto this feed."""
        return Settings(broker_url=self.broker_url, **self.topics())

    async def dead_letters(self) -> list[dict[str, Any]]:
        """The dead-letter envelopes on the feed's DLQ."""
        return [orjson.loads(v) for v in await read_topic(self.broker_url, self.topics()["dead_letter_topic"])]


class PacedReplay:
    """Produces a ``.jsonl`` file onto a feed in event-time order, compressed into ``seconds``.

    Unlike ``streams.replay.replay`` it reports progress (``sent``), so a fault can be injected at a known
    point, and it can be paused: a pause shifts the rest of the schedule, keeping the gaps between events.
    The producer retries for a while, so a broker that is briefly away delays the feed rather than failing it.
    """

    def __init__(self, path: Path, feed: Feed, seconds: float) -> None:
        self.feed = feed
        self.lines = load_lines(path, feed.settings())
        finite = [arrival for arrival, *_ in self.lines if arrival != float("-inf")]
        first, last = (finite[0], finite[-1]) if finite else (0.0, 0.0)
        span = max(last - first, 1.0)
        self.due = [max(arrival - first, 0.0) / span * seconds for arrival, *_ in self.lines]
        self.sent = 0
        self._running = asyncio.Event()
        self._running.set()
        self._paused_at: float | None = None
        self._shift = 0.0
        self.task: asyncio.Task[int] | None = None

    @property
    def total(self) -> int:
        return len(self.lines)

    def start(self) -> asyncio.Task[int]:
        self.task = asyncio.create_task(self._run(), name="paced-replay")
        return self.task

    def pause(self) -> None:
        if self._paused_at is None:
            self._paused_at = time.monotonic()
            self._running.clear()

    def resume(self) -> None:
        if self._paused_at is not None:
            self._shift += time.monotonic() - self._paused_at
            self._paused_at = None
            self._running.set()

    async def reached(self, fraction: float, timeout_s: float = 120.0) -> None:
        """Wait until ``fraction`` of the lines were handed to the producer."""

        async def there() -> bool:
            assert self.task is not None
            if self.task.done():
                self.task.result()  # raises if the replay failed
            return self.sent >= fraction * self.total

        await wait_until(there, timeout_s, f"{fraction:.0%} of the replay sent", interval_s=0.05)

    async def _run(self) -> int:
        producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap(self.feed.broker_url), linger_ms=5, acks=1, request_timeout_ms=60_000
        )
        await producer.start()
        started = time.monotonic()
        try:
            pending = []
            for i, (_arrival, topic, key, value) in enumerate(self.lines):
                while True:
                    await self._running.wait()
                    ahead = started + self._shift + self.due[i] - time.monotonic()
                    if ahead <= 0.001:
                        break
                    await asyncio.sleep(min(ahead, 0.05))  # short naps: a pause is noticed promptly
                pending.append(await producer.send(topic, value=value, key=key))
                self.sent = i + 1
                if len(pending) >= 500:
                    await asyncio.gather(*pending)
                    pending.clear()
            await asyncio.gather(*pending)
        finally:
            await producer.stop()
        return self.sent


# ----------------------------------------------------------------------------------------------- worker


@dataclass
class Worker:
    """One worker process (one incarnation: a restart makes a new ``Worker`` on the same port)."""

    name: str
    port: int
    env: dict[str, str]
    log_path: Path
    proc: subprocess.Popen[bytes]
    last: dict[str, float] = field(default_factory=dict)  # the latest /metrics scrape of this process

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log_tail(self, chars: int = 3000) -> str:
        with contextlib.suppress(OSError):
            return self.log_path.read_text(errors="replace")[-chars:]
        return ""

    async def ready(self) -> bool:
        """/readyz answers 200; fails loudly if the process died."""
        assert self.alive(), f"worker {self.name} exited with {self.proc.returncode}:\n{self.log_tail()}"
        try:
            async with httpx.AsyncClient(timeout=2) as client:
                return (await client.get(self.base_url + "/readyz")).status_code == 200
        except httpx.HTTPError:
            return False

    async def wait_ready(self, timeout_s: float = WORKER_READY_S) -> float:
        """Seconds until /readyz answered 200."""
        return await wait_until(self.ready, timeout_s, f"worker {self.name} ready")

    async def metrics(self) -> dict[str, float]:
        """Scrape /metrics (kept as ``last``); the previous scrape if the process does not answer."""
        if self.alive():
            with contextlib.suppress(httpx.HTTPError):
                self.last = await asyncio.to_thread(scrape, self.base_url + "/metrics")
        return self.last

    def value(self, name: str, **labels: str) -> float:
        """A metric's total in the latest scrape."""
        return total(self.last, name, **labels)

    async def kill(self) -> None:
        """SIGKILL, as a crash (the last scrape is taken just before)."""
        await self.metrics()
        self.proc.kill()
        await asyncio.to_thread(self.proc.wait)

    async def terminate(self, timeout_s: float = 30.0) -> None:
        """SIGTERM (a graceful leave: the worker commits and leaves its group), SIGKILL if it hangs."""
        await self.metrics()
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.to_thread(self.proc.wait, timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                await asyncio.to_thread(self.proc.wait)


# ---------------------------------------------------------------------------------------------- cluster


class Cluster:
    """Workers of one app id reading one feed, writing to one Redis database and one receiver."""

    def __init__(
        self,
        *,
        app_id: str,
        feed: Feed,
        redis_url: str,
        dispatch_url: str,
        data_dir: Path,
        workdir: Path,
        env: dict[str, str] | None = None,
    ) -> None:
        self.app_id = app_id
        self.feed = feed
        self.redis_url = redis_url
        self.dispatch_url = dispatch_url
        self.data_dir = data_dir
        self.workdir = workdir
        self.extra_env = dict(env or {})
        self.workers: list[Worker] = []  # every incarnation ever started, in order
        self.rows: dict[str, list[float | None]] = {}  # feature rows seen so far, by event id
        self.state: dict[str, Any] = {}  # the last view :meth:`settled` had

    @property
    def settings(self) -> Settings:
        return Settings(
            data_dir=self.data_dir,
            broker_url=self.feed.broker_url,
            redis_url=self.redis_url,
            dispatch_url=self.dispatch_url,
            app_id=self.app_id,
            **self.feed.topics(),
        )

    def env(self, port: int) -> dict[str, str]:
        return {
            "FW_BROKER_URL": self.feed.broker_url,
            "FW_REDIS_URL": self.redis_url,
            "FW_DISPATCH_URL": self.dispatch_url,
            "FW_DATA_DIR": str(self.data_dir),
            "FW_APP_ID": self.app_id,
            "FW_WORKER_WEB_PORT": str(port),
            "FW_PUBLISH_FEATURES": "true",  # every scored event leaves a row: the proof that none was lost
            **self.feed.env(),
            **self.extra_env,
        }

    async def prepare(self, responders: Iterable[Any] = ()) -> None:
        """Create the topics, empty this cluster's Redis database and load the responder roster."""
        await ensure_topics(self.settings)
        redis = Redis.from_url(self.redis_url)
        try:
            await redis.flushdb()
            await ResponderRegistry(redis).load(list(responders))
        finally:
            await redis.aclose()

    def start(self, name: str | None = None, port: int | None = None, env: dict[str, str] | None = None) -> Worker:
        """Launch a worker process (not waiting for readiness)."""
        name = name or f"w{len({w.name for w in self.workers}) + 1}"
        port = port or free_port()
        full_env = {**os.environ, **self.env(port), **(env or {})}
        log_path = self.workdir / f"{self.app_id}-{name}.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with log_path.open("ab") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "fraudwatch.cli", "worker"], env=full_env, stdout=out, stderr=subprocess.STDOUT
            )
        worker = Worker(name, port, env or {}, log_path, proc)
        self.workers.append(worker)
        return worker

    def restart(self, old: Worker) -> Worker:
        """A new process in place of a stopped one: same name, port and env."""
        assert not old.alive(), "stop or kill the worker first"
        return self.start(old.name, old.port, old.env)

    def live(self) -> list[Worker]:
        return [w for w in self.workers if w.alive()]

    async def scrape(self) -> None:
        """Refresh ``last`` of every live worker."""
        await asyncio.gather(*(w.metrics() for w in self.live()))

    def sum(self, name: str, **labels: str) -> float:
        """A metric summed over every incarnation's latest scrape (counters restart at zero per process)."""
        return sum(w.value(name, **labels) for w in self.workers)

    async def stop_all(self) -> None:
        """SIGTERM every live worker (in parallel)."""
        await asyncio.gather(*(w.terminate() for w in self.live()))

    def kill_all(self) -> None:
        """SIGKILL whatever still runs: the cleanup that cannot hang."""
        for worker in self.live():
            worker.proc.kill()
            worker.proc.wait()

    def logs(self, chars: int = 2000) -> str:
        return "".join(f"\n--- {w.name} (pid {w.proc.pid}) ---\n{w.log_tail(chars)}" for w in self.workers)

    # -- handovers on Tansu ------------------------------------------------------------------------

    async def quiesce(self, stable_s: float = 3.0, timeout_s: float = 60.0) -> None:
        """With the feed paused: wait until no new feature row appeared for ``stable_s`` (nothing in flight)."""
        seen = {"n": -1, "at": time.monotonic()}

        async def still() -> bool:
            n = len(await self.featured())
            if n != seen["n"]:
                seen.update(n=n, at=time.monotonic())
            return time.monotonic() - seen["at"] >= stable_s

        await wait_until(still, timeout_s, f"{self.app_id} quiet", interval_s=1.0)

    async def fence_changelogs(self) -> None:
        """Append a tombstone of a key no table has, as a batch of its own, to every changelog partition.

        Works around a Tansu 0.6.0 bug, not a service one: Faust ends table recovery at the ListOffsets
        end, which Tansu reports as the last record batch's base offset + 1, so a recovering worker
        silently drops every record after the first of the last batch (measured: 50 keys written in one
        burst, 2 recovered). With a one-record batch last, the reported end is the true end. Deleting an
        absent key changes no state. Kafka reports the true end, so production needs no such fence.
        """
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap(self.feed.broker_url), acks=1)
        await producer.start()
        try:
            for table in ("caller-state", "subscriber-state"):
                for partition in range(self.settings.partitions):
                    await producer.send_and_wait(
                        f"{self.app_id}-{table}-changelog", key=b"__fence__", value=None, partition=partition
                    )
        finally:
            await producer.stop()

    # -- what the run produced ---------------------------------------------------------------------

    async def featured(self) -> dict[str, list[float | None]]:
        """Event id -> feature row of every event this app scored so far (``<app_id>.features``)."""
        for value in await read_topic(self.feed.broker_url, internal_topic(self.settings, "features")):
            row = orjson.loads(value)
            self.rows[row["event_id"]] = row["values"]
        return self.rows

    async def alerting(self) -> dict[str, int]:
        """Tasks created, waiting in the outbox and dead-lettered, from this cluster's Redis database."""
        redis = Redis.from_url(self.redis_url, socket_timeout=5)
        try:
            raw = await redis.hgetall(redis_keys.STATS)
            counts = {redis_keys.text(k) or "": int(v) for k, v in raw.items()}
            pipe = redis.pipeline(transaction=False)
            pipe.xlen(redis_keys.OUTBOX)
            pipe.xlen(redis_keys.OUTBOX_DEAD)
            waiting, dead = await pipe.execute()
        finally:
            await redis.aclose()
        return {
            "tasks": sum(v for k, v in counts.items() if k.startswith("tasks:L")),
            "outbox": int(waiting),
            "dead": int(dead),
        }

    async def settled(
        self, receiver: TaskReceiver, valid_ids: set[str], timeout_s: float = 120.0, stall_s: float = 20.0
    ) -> None:
        """Wait until every valid event has a feature row (or none came for ``stall_s``: the report then
        names the missing ones), no decision waits for a retry, the outbox is empty, and the receiver holds
        every task Redis created; quiet twice, 2 s apart. Faults in between (Redis or broker away) just
        mean "not yet"."""
        growth = {"n": -1, "at": time.monotonic()}

        async def quiet() -> bool:
            try:
                await self.scrape()
                rows = await self.featured()
                self.state.update(await self.alerting())
            except Exception as exc:  # a service is away: not settled yet
                self.state["error"] = repr(exc)
                return False
            self.state.pop("error", None)
            if len(rows) != growth["n"]:
                growth.update(n=len(rows), at=time.monotonic())
            self.state["unscored"] = len(valid_ids - rows.keys())
            self.state["retrying"] = sum(w.value("fw_alerting_retry_queue") for w in self.live())
            self.state["received"] = len(receiver.tasks)
            scored = self.state["unscored"] == 0 or time.monotonic() - growth["at"] > stall_s
            return bool(
                scored
                and self.state["retrying"] == 0
                and self.state["outbox"] == 0
                and self.state["received"] >= self.state["tasks"] - self.state["dead"]
            )

        async def twice() -> bool:
            if not await quiet():
                return False
            await asyncio.sleep(2)
            return await quiet()

        try:
            await wait_until(twice, timeout_s, f"{self.app_id} settled", interval_s=1.0)
        except AssertionError as exc:
            raise AssertionError(f"{exc}: {self.state}{self.logs()}") from None


# ----------------------------------------------------------------------------------------------- report


@dataclass
class Outcome:
    """What one run produced: the task keys at the receiver and the events it scored."""

    keys: set[str]
    duplicates: int  # POSTs of a key the receiver already had (redeliveries it deduplicated)
    doubled: dict[str, set[str]]  # keys POSTed under two task ids (a task created twice)
    repeated: list[str]  # keys the receiver stored twice (must never happen)
    rows: dict[str, list[float | None]]  # feature rows by event id
    scored: int  # fw_events_scored_total summed over every worker incarnation (re-scored events included)
    dead_tasks: int  # tasks the deliverer gave up on (fw:outbox:dead)


async def outcome(cluster: Cluster, receiver: TaskReceiver) -> Outcome:
    stored = receiver.task_keys()
    await cluster.scrape()
    return Outcome(
        keys=set(stored),
        duplicates=receiver.duplicates,
        doubled=receiver.doubled(),
        repeated=sorted(k for k, n in Counter(stored).items() if n > 1),
        rows=dict(await cluster.featured()),
        scored=int(cluster.sum("fw_events_scored_total")),
        dead_tasks=(await cluster.alerting())["dead"],
    )


def subscriber_level(task_key: str) -> str:
    """``<pseudonym>-<opening ms>:L<level>`` -> ``<pseudonym>:L<level>``."""
    case, _, level = task_key.rpartition(":")
    return f"{case.rpartition('-')[0]}:{level}"


def _multiset_minus(left: set[str], right: set[str]) -> set[str]:
    """Keys of ``left`` whose (subscriber, level) occurs more often in ``left`` than in ``right``."""
    surplus = Counter(map(subscriber_level, left)) - Counter(map(subscriber_level, right))
    picked: set[str] = set()
    for key in sorted(left):
        name = subscriber_level(key)
        if surplus[name] > 0 and key not in right:
            surplus[name] -= 1
            picked.add(key)
    return picked


@dataclass
class FaultReport:
    """The per-fault table: what went in, what was scored, what was expected and what arrived."""

    fault: str
    sent: int
    valid_ids: set[str]
    run: Outcome
    reference: Outcome
    notes: dict[str, Any] = field(default_factory=dict)

    # Tasks are compared by (subscriber, level), counted, not by idempotency key: the key carries the
    # episode's opening time, the time of its first decision, and under CPU load a level-1 decision near
    # its threshold can move by an event when the caller hop runs behind (order across partitions changes
    # a few rows). The same subscriber tasked at the same level is the same warning for a responder.
    @property
    def lost_tasks(self) -> set[str]:
        return _multiset_minus(self.reference.keys, self.run.keys)

    @property
    def extra_tasks(self) -> set[str]:
        return _multiset_minus(self.run.keys, self.reference.keys)

    @property
    def reopened(self) -> int:
        """Tasks matched by subscriber and level whose episode opened at another event than the reference's."""
        return len(self.run.keys - self.reference.keys) - len(self.extra_tasks)

    @property
    def unscored(self) -> set[str]:
        return self.valid_ids - self.run.rows.keys()

    @property
    def rows_differing(self) -> int:
        """Events whose feature row differs from the reference run's (informative: order under backlog
        changes rows, see the test module)."""
        ref = self.reference.rows
        return sum(1 for eid, row in self.run.rows.items() if eid in ref and row != ref[eid])

    def table(self) -> str:
        cells = {
            "fault": self.fault,
            "sent": self.sent,
            "valid": len(self.valid_ids),
            "scored": self.run.scored,
            "unscored": len(self.unscored),
            "tasks expected": len(self.reference.keys),
            "tasks received": len(self.run.keys),
            "duplicates": self.run.duplicates,
            "lost": len(self.lost_tasks),
            "extra": len(self.extra_tasks),
            "doubled": len(self.run.doubled),
            "dead": self.run.dead_tasks,
            "rows differing": self.rows_differing,
            "opened at another event": self.reopened,
        }
        widths = {k: max(len(k), len(str(v))) for k, v in cells.items()}
        head = " | ".join(k.rjust(widths[k]) for k in cells)
        row = " | ".join(str(v).rjust(widths[k]) for k, v in cells.items())
        listed = {"lost keys": sorted(self.lost_tasks)[:5], "extra keys": sorted(self.extra_tasks)[:5]}
        notes = "".join(f"\n  {k}: {v}" for k, v in {**self.notes, **{k: v for k, v in listed.items() if v}}.items())
        return f"\n{head}\n{row}{notes}\n"

    def check(self) -> None:
        """The reliability claims: every valid event scored, every reference task exactly once, nothing else."""
        msg = self.table()
        print(msg, flush=True)
        assert not self.run.repeated, f"the receiver stored a key twice: {self.run.repeated[:5]}{msg}"
        assert not self.unscored, f"{len(self.unscored)} valid events never scored: {sorted(self.unscored)[:5]}{msg}"
        assert not self.lost_tasks, f"tasks lost: {sorted(self.lost_tasks)[:5]}{msg}"
        assert not self.extra_tasks, f"tasks the reference run did not create: {sorted(self.extra_tasks)[:5]}{msg}"
        assert not self.run.doubled, f"tasks created twice under one key: {list(self.run.doubled.items())[:3]}{msg}"
        assert self.run.dead_tasks == 0, f"{self.run.dead_tasks} tasks dead-lettered by the deliverer{msg}"
