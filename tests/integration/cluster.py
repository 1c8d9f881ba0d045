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
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
from aiohttp import web
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from redis.asyncio import Redis

from alerting import keys as redis_keys
from alerting.dispatcher import Dispatcher
from alerting.responders import ResponderRegistry
from core.settings import Settings
from sandbox.demo import scrape, total
from sandbox.receiver import Receiver, ReceiverServer
from sandbox.services import free_port
from streams.faust_internals import verified_end_offsets
from streams.pending_alerts import decode_pending
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
        self.server: ReceiverServer | None = None

    async def down_for(self, seconds: float) -> None:
        """Stop serving for ``seconds`` (connections refused), then serve again on the same port."""
        assert self.server is not None and self.server.base_url is not None
        port = int(self.server.base_url.rsplit(":", 1)[1])
        await self.server.stop()
        await asyncio.sleep(seconds)
        await self.server.start(port=port)

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
    """A started receiver server and its (counting) receiver (which keeps it as ``server``)."""
    receiver = TaskReceiver()
    server = ReceiverServer(receiver)
    await server.start()
    receiver.server = server
    return server, receiver


# ------------------------------------------------------------------------------------------------ proxy


class TcpProxy:
    """A TCP proxy on loopback that can cut every connection through it and refuse new ones for a while.

    Put between the clients and a broker that advertises the proxy's port, it is the network failing
    between them while both sides keep running.
    """

    def __init__(self, upstream_port: int, port: int | None = None) -> None:
        self.upstream_port = upstream_port
        self.port = port or free_port()
        self._server: asyncio.AbstractServer | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError:
            writer.close()
            return
        self._writers |= {writer, up_writer}

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError, asyncio.CancelledError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        self._writers -= {writer, up_writer}

    async def cut(self) -> None:
        """Close every connection and stop listening (new connections are refused)."""
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def stop(self) -> None:
        await self.cut()


# ------------------------------------------------------------------------------------------------ kafka


Record = tuple[int, int, bytes | None, bytes | None]  # partition, offset, key, value


async def read_records(broker_url: str, topic: str, timeout_s: float = 30.0) -> list[Record]:
    """Every record of a topic, from its start to its end as of now (nothing if it does not exist)."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap(broker_url), group_id=None, enable_auto_commit=False, request_timeout_ms=10_000
    )
    await consumer.start()
    out: list[Record] = []
    try:
        await consumer.topics()  # a fresh consumer knows no topic's partitions until it asks
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        if not tps:
            return out
        # Tansu's ListOffsets stops short of the end: the same check the worker's recovery makes.
        ends = await verified_end_offsets(bootstrap(broker_url), await consumer.end_offsets(tps))
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        deadline = time.monotonic() + timeout_s
        while [tp for tp in tps if await consumer.position(tp) < ends[tp]]:
            assert time.monotonic() < deadline, f"could not read {topic} to its end in {timeout_s} s"
            for tp, records in (await consumer.getmany(timeout_ms=500)).items():
                out.extend((tp.partition, r.offset, r.key, r.value) for r in records if r.offset < ends[tp])
    finally:
        await consumer.stop()
    return out


async def read_topic(broker_url: str, topic: str, timeout_s: float = 30.0) -> list[bytes]:
    """Every value of a topic (tombstones left out), from its start to its end as of now."""
    return [v for *_, v in await read_records(broker_url, topic, timeout_s) if v is not None]


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
            "holds_topic": f"{p}.holds.v1",
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


def _event_id(line: bytes) -> str:
    try:
        return str(orjson.loads(line).get("event_id", ""))
    except (orjson.JSONDecodeError, AttributeError):
        return ""


class PacedReplay:
    """Produces a ``.jsonl`` file onto a feed in event-time order, compressed into ``seconds``.

    Unlike ``streams.replay.replay`` it reports progress (``sent``), so a fault can be injected at a known
    point (the feed itself never pauses: a fault meets the stream as it comes).
    The producer retries for a while, so a broker that is briefly away delays the feed rather than failing it.
    """

    def __init__(self, path: Path, feed: Feed, seconds: float, delays: Mapping[str, int] | None = None) -> None:
        """``delays``: event id -> event-time ms that event reaches the broker late (out of order)."""
        self.feed = feed
        self.lines = load_lines(path, feed.settings())
        if delays:
            self.lines = sorted(
                (
                    (arrival + delays.get(_event_id(value), 0), topic, key, value)
                    for arrival, topic, key, value in self.lines
                ),
                key=lambda line: line[0],
            )
        finite = [arrival for arrival, *_ in self.lines if arrival != float("-inf")]
        first, last = (finite[0], finite[-1]) if finite else (0.0, 0.0)
        span = max(last - first, 1.0)
        self.due = [max(arrival - first, 0.0) / span * seconds for arrival, *_ in self.lines]
        self.sent = 0
        self.task: asyncio.Task[int] | None = None

    @property
    def total(self) -> int:
        return len(self.lines)

    def start(self) -> asyncio.Task[int]:
        self.task = asyncio.create_task(self._run(), name="paced-replay")
        return self.task

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
                ahead = started + self.due[i] - time.monotonic()
                if ahead > 0.001:
                    await asyncio.sleep(ahead)
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
        # (partition:offset, event id, level, event ms) of every pending alert, by partition in offset order
        self.pending_log: list[tuple[str, str, int, int]] = []

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

    # -- what the run produced ---------------------------------------------------------------------

    async def featured(self) -> dict[str, list[float | None]]:
        """Event id -> feature row of every event this app scored so far (``<app_id>.features``)."""
        for value in await read_topic(self.feed.broker_url, internal_topic(self.settings, "features")):
            row = orjson.loads(value)
            self.rows[row["event_id"]] = row["values"]
        return self.rows

    async def decided_tasks(self, scratch_redis_url: str) -> set[str]:
        """The task keys this run's own decisions call for: every record of its pending-alerts hop, in its
        partition's order (a subscriber's alerts share one), through a fresh dispatcher on an emptied scratch
        database. Records handled twice live (a crash before the explain offsets were committed) change nothing
        the second time, here as there: a case takes a task per level only when it escalates."""
        settings = self.settings
        records = await read_records(self.feed.broker_url, internal_topic(settings, settings.pending_alerts_topic))
        redis = Redis.from_url(scratch_redis_url)
        decided: set[str] = set()
        self.pending_log = []
        try:
            await redis.flushdb()
            dispatcher = Dispatcher(redis, settings)
            for partition, offset, _key, raw in records:
                assert raw is not None
                alert = decode_pending(raw)
                self.pending_log.append((f"{partition}:{offset}", alert.row.event_id, alert.level, alert.row.avail_ms))
                # No responder search: the keys do not depend on who is sent.
                decision = alert.decision(located=False)
                task = await dispatcher.handle(decision)
                if task is not None:
                    decided.add(str(task["idempotency_key"]))
        finally:
            await redis.flushdb()
            await redis.aclose()
        return decided

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

FAULT_TABLE: list[FaultReport] = []  # every checked report of this session, printed together at its end


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
    decided: set[str]  # the task keys this run's own decisions call for (Cluster.decided_tasks)


SCRATCH_DB = 15  # on the cluster's Redis server: where decided_tasks replays the decisions (no test uses it)


async def outcome(cluster: Cluster, receiver: TaskReceiver) -> Outcome:
    """What the run produced, with the tasks its decisions call for (replayed on the scratch database)."""
    scratch = cluster.redis_url.rsplit("/", 1)[0] + f"/{SCRATCH_DB}"
    assert scratch != cluster.redis_url, "the cluster must not use the scratch database"
    stored = receiver.task_keys()
    await cluster.scrape()
    result = Outcome(
        keys=set(stored),
        duplicates=receiver.duplicates,
        doubled=receiver.doubled(),
        repeated=sorted(k for k, n in Counter(stored).items() if n > 1),
        rows=dict(await cluster.featured()),
        scored=int(cluster.sum("fw_events_scored_total")),
        dead_tasks=(await cluster.alerting())["dead"],
        decided=await cluster.decided_tasks(scratch),
    )
    # Kept beside the worker logs (whose "alert" lines carry the same partition:offset) for a failed run.
    (cluster.workdir / f"{cluster.app_id}-pending-alerts.json").write_bytes(orjson.dumps(cluster.pending_log))
    return result


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


def render_table(rows: list[dict[str, Any]]) -> str:
    """Rows of equal keys as a right-aligned text table with one header line."""
    widths = {k: max(len(k), *(len(str(r[k])) for r in rows)) for k in rows[0]}
    lines = [" | ".join(k.rjust(w) for k, w in widths.items())]
    lines += [" | ".join(str(r[k]).rjust(w) for k, w in widths.items()) for r in rows]
    return "\n".join(lines)


@dataclass
class FaultReport:
    """The per-fault table: what went in, what was scored, what was expected and what arrived.

    Where the comparison is exact, and why there: a call's caller snapshot and a subscriber's rows are built
    in the order events reach the ``callers`` and ``score`` hops, which merge several partitions each; a
    backlog after a fault (a restart re-reading from the committed offsets) interleaves them otherwise than
    an undisturbed run, so a few rows, and through them a task near its threshold, can differ from the
    reference (measured: 4-8 of 5059 rows after one kill, about 140 after ten). So tasks are compared at
    the decision boundary: the tasks this run's own decisions call for (:meth:`Cluster.decided_tasks`)
    must reach the receiver exactly once, and nothing else may; and every valid event must be scored. The
    differences from the undisturbed run are shown beside, as information, until rows follow event time
    only (per-partition watermarks at both hops).
    """

    fault: str
    sent: int
    valid_ids: set[str]
    run: Outcome
    reference: Outcome
    notes: dict[str, Any] = field(default_factory=dict)

    @property
    def lost_tasks(self) -> set[str]:
        return self.run.decided - self.run.keys

    @property
    def extra_tasks(self) -> set[str]:
        return self.run.keys - self.run.decided

    @property
    def unscored(self) -> set[str]:
        return self.valid_ids - self.run.rows.keys()

    @property
    def rows_differing(self) -> int:
        """Events whose feature row differs from the reference run's (see the class docstring)."""
        ref = self.reference.rows
        return sum(1 for eid, row in self.run.rows.items() if eid in ref and row != ref[eid])

    def cells(self) -> dict[str, Any]:
        """The row of this fault in the fault table."""
        # Tasks against the undisturbed run are matched by (subscriber, level): a task's key carries the time
        # its episode opened, which moves with the rows.
        return {
            "fault": self.fault,
            "sent": self.sent,
            "valid": len(self.valid_ids),
            "unscored": len(self.unscored),
            "tasks expected": len(self.run.decided),
            "received": len(self.run.keys),
            "duplicates": self.run.duplicates,
            "lost": len(self.lost_tasks),
            "extra": len(self.extra_tasks),
            "doubled": len(self.run.doubled),
            "dead": self.run.dead_tasks,
            "undisturbed tasks": len(self.reference.keys),
            "not in it": len(_multiset_minus(self.run.keys, self.reference.keys)),
            "missing from it": len(_multiset_minus(self.reference.keys, self.run.keys)),
            "rows differing": self.rows_differing,
        }

    def table(self) -> str:
        listed = {"lost keys": sorted(self.lost_tasks)[:5], "extra keys": sorted(self.extra_tasks)[:5]}
        notes = "".join(f"\n  {k}: {v}" for k, v in {**self.notes, **{k: v for k, v in listed.items() if v}}.items())
        return f"\n{render_table([self.cells()])}{notes}\n"

    def check(self) -> None:
        """The reliability claims: every valid event scored, every decided task exactly once, nothing else."""
        msg = self.table()
        print(msg, flush=True)
        FAULT_TABLE.append(self)
        assert self.run.decided, f"the run's decisions call for no task: the check would prove nothing{msg}"
        assert not self.run.repeated, f"the receiver stored a key twice: {self.run.repeated[:5]}{msg}"
        assert not self.unscored, f"{len(self.unscored)} valid events never scored: {sorted(self.unscored)[:5]}{msg}"
        assert not self.lost_tasks, f"tasks lost: {sorted(self.lost_tasks)[:5]}{msg}"
        assert not self.extra_tasks, f"tasks the run's decisions did not call for: {sorted(self.extra_tasks)[:5]}{msg}"
        assert not self.run.doubled, f"tasks created twice under one key: {list(self.run.doubled.items())[:3]}{msg}"
        assert self.run.dead_tasks == 0, f"{self.run.dead_tasks} tasks dead-lettered by the deliverer{msg}"
