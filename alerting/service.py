"""The dispatch service: console, responder API and app, acknowledgement watcher and label publisher in one process.

Run by ``fraudwatch dispatch`` (and by ``fraudwatch run`` as a child process). Every part keeps its state in Redis
and coordinates there, so replicas run side by side: a task moves by compare-and-set on its state hash (two
watchers cannot both escalate one assignment), and labels leave through a Redis consumer group. The outbox
deliverer stays in the stream workers: a task is delivered by the process that wrote it, within milliseconds,
and a worker's restart (not a console's) is what the outbox must survive; any worker also takes over another's
pending entries.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from redis.asyncio import Redis
from redis.exceptions import RedisError

from alerting import keys
from alerting.ackwatch import AckWatcher
from alerting.console.server import CONSOLE, create_app
from alerting.labels import LabelPublisher, LabelSink
from alerting.metrics import TASKS_UNACKNOWLEDGED
from core.clock import SYSTEM_CLOCK, Clock, sleep_or_stop
from core.errors import ConfigurationError
from core.settings import Settings

__all__ = ["DispatchService", "start_console"]

log = logging.getLogger(__name__)


class DispatchService:
    """One replica of the dispatch service; :meth:`start` binds and starts its loops, :meth:`stop` ends them."""

    def __init__(self, settings: Settings, *, label_sink: LabelSink | None = None, clock: Clock = SYSTEM_CLOCK) -> None:
        """``label_sink`` publishes labels on the labels topic; None = labels stay in Redis (tests, no broker)."""
        if not settings.redis_url:
            raise ConfigurationError("the dispatch service needs FW_REDIS_URL")
        self.settings = settings
        self.clock = clock
        self.redis: Redis = Redis.from_url(settings.redis_url)
        self.app = create_app(settings, self.redis, clock=clock)
        self.app.router.add_get("/metrics", _metrics)
        self.app.router.add_get("/healthz", _healthz)
        self.app.router.add_get("/readyz", self._readyz)
        lifecycle = self.app[CONSOLE].lifecycle
        self.watcher = AckWatcher(lifecycle) if settings.ack_watch else None
        self.labels = LabelPublisher(self.redis, settings, label_sink, clock=clock) if label_sink else None
        self.url = ""
        self._runner = web.AppRunner(self.app, access_log=None, shutdown_timeout=5.0)
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self, host: str | None = None, port: int | None = None) -> str:
        """Serve on ``host:port`` (the settings' by default; port 0 = any free one) and start the loops."""
        try:
            await self._runner.setup()
            site = web.TCPSite(
                self._runner,
                host if host is not None else self.settings.console_host,
                port if port is not None else self.settings.console_port,
            )
            await site.start()
        except BaseException:
            await self._runner.cleanup()
            await self.redis.aclose()
            raise
        bound_host, bound_port = self._runner.addresses[0][:2]
        self.url = f"http://{bound_host}:{bound_port}"
        if self.watcher is not None:
            self._tasks.append(asyncio.create_task(self.watcher.run(self._stop), name="ack-watcher"))
        if self.labels is not None:
            self._tasks.append(asyncio.create_task(self.labels.run(self._stop), name="label-publisher"))
        self._tasks.append(asyncio.create_task(self._gauges(), name="dispatch-gauges"))
        log.info("dispatch service at %s", self.url)
        return self.url

    async def stop(self) -> None:
        """Stop the loops (a label in flight is finished or left pending for a replica), the server and Redis."""
        self._stop.set()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                await asyncio.wait_for(task, 10)
        if self.watcher is not None:
            await self.watcher.aclose()
        await self._runner.cleanup()
        await self.redis.aclose()

    async def _gauges(self) -> None:
        while not await sleep_or_stop(self.clock, self.settings.ack_check_interval_s, self._stop):
            with contextlib.suppress(RedisError, OSError):
                TASKS_UNACKNOWLEDGED.set(await self.redis.zcard(keys.TASKS_AWAITING_ACK))

    async def _readyz(self, request: web.Request) -> web.Response:
        """Ready when Redis answers (every request needs it); the labels' backlog is reported, not gating."""
        try:
            redis_ok = bool(await asyncio.wait_for(self.redis.ping(), 2.0))
        except (RedisError, OSError, TimeoutError):
            redis_ok = False
        body = {
            "ready": redis_ok,
            "redis": redis_ok,
            "ack_watcher": self.watcher is not None,
            "label_publisher": self.labels is not None,
            "labels_published": self.labels.published if self.labels else 0,
        }
        return web.json_response(body, status=200 if redis_ok else 503)


async def _metrics(request: web.Request) -> web.Response:
    """Prometheus exposition of this process's metrics."""
    return web.Response(body=generate_latest(), content_type=CONTENT_TYPE_LATEST.split(";")[0])


async def _healthz(request: web.Request) -> web.Response:
    """Liveness: the process answers."""
    return web.json_response({"status": "ok"})


async def start_console(
    settings: Settings,
    redis_url: str,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    label_sink: LabelSink | None = None,
    watch_acks: bool = True,
    clock: Clock = SYSTEM_CLOCK,
) -> DispatchService:
    """Start a dispatch service in this process on ``host:port`` (tests and embedded use)."""
    own = settings.model_copy(update={"redis_url": redis_url, "ack_watch": watch_acks})
    service = DispatchService(own, label_sink=label_sink, clock=clock)
    await service.start(host, port)
    return service
