"""Delivery of outbox tasks to the dispatch endpoint: at least once, with idempotency keys and retries."""

from __future__ import annotations

import asyncio
import logging
import math
import os
import random
import socket
import uuid
from types import TracebackType

import httpx
from redis.asyncio import Redis
from redis.exceptions import RedisError

from alerting.backoff import backoff_delay
from alerting.metrics import DECISION_TO_DELIVERY, DELIVERY_FAILURES, DELIVERY_RETRIES, TASKS_DELIVERED
from alerting.outbox import TASK_OUTBOX, Outbox, OutboxEntry, OutboxStreams
from core.clock import SYSTEM_CLOCK, Clock, sleep_or_stop
from core.errors import ConfigurationError, DeliveryFailed
from core.settings import Settings

__all__ = ["Deliverer", "backoff_delay"]

log = logging.getLogger(__name__)

# Failure reasons (the label values of fw_delivery_failures_total): a small fixed set.
REJECTED, EXHAUSTED, MALFORMED = "rejected", "retries_exhausted", "malformed"


def _retry_after(response: httpx.Response) -> float | None:
    """Seconds from a numeric Retry-After header (HTTP-date forms are ignored)."""
    value = response.headers.get("Retry-After")
    try:
        seconds = float(value) if value is not None else None
    except ValueError:
        return None
    return seconds if seconds is not None and math.isfinite(seconds) and seconds >= 0 else None


class Deliverer:
    """Reads ``fw:outbox`` as one consumer of group ``delivery`` and POSTs each task to the dispatch URL.

    Subclasses deliver another outbox (``STREAMS``) elsewhere: see ``alerting.holds.HoldDeliverer``.
    """

    STREAMS: OutboxStreams = TASK_OUTBOX
    URL_REQUIRED = True  # False: an entry with no URL to POST to is acknowledged once ``_attempt`` returns

    def __init__(
        self,
        redis: Redis,
        settings: Settings,
        *,
        url: str | None = None,
        client: httpx.AsyncClient | None = None,
        consumer: str | None = None,
        claim_idle_ms: int | None = None,
        concurrency: int = 16,
        block_ms: int = 1000,
        rng: random.Random | None = None,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self._url = url or self._default_url(settings)
        if not self._url and self.URL_REQUIRED:
            raise ConfigurationError("no dispatch URL: set FW_DISPATCH_URL or pass url=")
        self._settings = settings
        self._clock = clock
        self._owns_client = client is None
        self._client = client or httpx.AsyncClient(timeout=settings.delivery_timeout_s)
        # A per-instance suffix keeps two deliverers in one process (or a restarted pod) apart.
        self.outbox = Outbox(
            redis,
            consumer or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}",
            clock=clock,
            streams=self.STREAMS,
        )
        # In-flight entries are touched before every retry, so an entry idle longer than one attempt plus
        # one backoff pause has lost its deliverer; the margin avoids stealing from a slow but live peer.
        self._claim_idle_ms = (
            claim_idle_ms
            if claim_idle_ms is not None
            else int(2000 * (settings.delivery_timeout_s + settings.delivery_backoff_max_s)) + 5000
        )
        self._concurrency = max(1, concurrency)
        # Bounds concurrent POSTs even when a recovery hands over thousands of entries at once.
        self._slots = asyncio.Semaphore(self._concurrency)
        self._block_ms = block_ms
        self._rng = rng or random.Random()
        self._group_ready = False

    def _default_url(self, settings: Settings) -> str | None:
        """Where entries are POSTed when no ``url`` is passed."""
        return settings.dispatch_url

    def _on_retry(self) -> None:
        DELIVERY_RETRIES.inc()

    def _on_failure(self, reason: str) -> None:
        DELIVERY_FAILURES.labels(reason=reason).inc()

    def _on_delivered(self, entry: OutboxEntry, latency_s: float | None) -> None:
        TASKS_DELIVERED.inc()
        if latency_s is not None:
            DECISION_TO_DELIVERY.observe(latency_s)

    async def __aenter__(self) -> Deliverer:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the HTTP client if this deliverer created it."""
        if self._owns_client:
            await self._client.aclose()

    async def drain_once(self) -> int:
        """Deliver (or dead-letter) everything pending now, including idle entries of crashed peers.

        Returns how many tasks this call delivered.
        """
        await self._ensure_group()
        entries = await self._recover()
        delivered = 0
        while True:
            if not entries:
                entries = await self.outbox.read_new(count=self._concurrency)
            if not entries:
                return delivered
            results = await asyncio.gather(*(self._guarded(e, None) for e in entries))
            delivered += sum(results)
            entries = []

    async def run(self, stop: asyncio.Event) -> None:
        """Deliver until ``stop`` is set; unfinished entries stay pending for the next deliverer."""
        inflight: dict[str, asyncio.Task[bool]] = {}

        def schedule(entries: list[OutboxEntry]) -> None:
            for e in entries:
                if e.entry_id not in inflight:
                    inflight[e.entry_id] = asyncio.create_task(self._guarded(e, stop))

        reclaim_every = max(0.05, self._claim_idle_ms / 2000)
        next_reclaim = 0.0  # reclaim right away: a crashed predecessor's entries come first
        while not stop.is_set():
            for eid in [eid for eid, t in inflight.items() if t.done()]:
                del inflight[eid]
            try:
                await self._ensure_group()
                if self._clock.monotonic() >= next_reclaim:
                    schedule(await self._recover())
                    next_reclaim = self._clock.monotonic() + reclaim_every
                free = self._concurrency - len(inflight)
                if free <= 0:
                    await asyncio.wait(
                        inflight.values(), timeout=self._block_ms / 1000, return_when=asyncio.FIRST_COMPLETED
                    )
                    continue
                schedule(await self.outbox.read_new(count=free, block_ms=self._block_ms))
            except RedisError as exc:
                # Redis down: entries are safe in the stream; wait and try again rather than die.
                log.warning("outbox read failed: %s", exc)
                if "NOGROUP" in str(exc):
                    self._group_ready = False  # the stream or group is gone (an emptied Redis): create it again
                await sleep_or_stop(self._clock, 1.0, stop)
        if inflight:
            await asyncio.gather(*inflight.values(), return_exceptions=True)

    async def _ensure_group(self) -> None:
        if not self._group_ready:
            await self.outbox.ensure_group()
            self._group_ready = True

    async def _recover(self) -> list[OutboxEntry]:
        own = await self.outbox.read_own_pending(count=1000)
        claimed = await self.outbox.claim_idle(self._claim_idle_ms)
        seen = {e.entry_id for e in own}
        return own + [e for e in claimed if e.entry_id not in seen]

    async def _guarded(self, entry: OutboxEntry, stop: asyncio.Event | None) -> bool:
        try:
            async with self._slots:
                return await self._deliver(entry, stop)
        except RedisError as exc:
            # The entry stays pending in the stream and is reclaimed later; nothing is lost.
            log.warning("task %s: outbox bookkeeping failed: %s", entry.task_id, exc)
            return False
        except Exception:
            # A bug must not kill the run loop silently; the entry stays pending and shows up in the logs again.
            log.exception("task %s: unexpected delivery error", entry.task_id)
            return False

    async def _deliver(self, entry: OutboxEntry, stop: asyncio.Event | None) -> bool:
        """Deliver one entry with retries; True when it was delivered and acknowledged here."""
        s = self._settings
        if not entry.well_formed:
            if await self.outbox.dead_letter(entry, MALFORMED):
                self._on_failure(MALFORMED)
            return False
        failures = 0
        while True:
            try:
                status = await self._attempt(entry)
            except DeliveryFailed as exc:
                failures += 1
                if not exc.retryable or failures >= s.delivery_max_attempts:
                    reason = EXHAUSTED if exc.retryable else REJECTED
                    log.warning("task %s: giving up after %d attempt(s): %s", entry.task_id, failures, exc)
                    if await self.outbox.dead_letter(
                        entry, reason, attempts=failures, last_error=str(exc), status_code=exc.status_code
                    ):
                        self._on_failure(reason)
                    return False
                delay = backoff_delay(failures, s.delivery_backoff_base_s, s.delivery_backoff_max_s, self._rng)
                if exc.retry_after_s is not None:  # the server knows its own recovery time better
                    delay = max(delay, min(exc.retry_after_s, s.delivery_backoff_max_s))
                self._on_retry()
                if await sleep_or_stop(self._clock, delay, stop):
                    return False  # stopping: leave the entry pending for the next deliverer
                await self.outbox.touch(entry.entry_id)
                continue
            if await self.outbox.ack_delivered(entry, status_code=status, attempts=failures + 1):
                latency = (
                    max(0.0, self._clock.now_s() - entry.enqueued_at) if math.isfinite(entry.enqueued_at) else None
                )
                self._on_delivered(entry, latency)
                return True
            return False  # another deliverer acknowledged it first; the receiver deduplicated us

    async def _attempt(self, entry: OutboxEntry) -> int:
        """One POST; the 2xx status, or DeliveryFailed saying whether to retry."""
        if self._url is None:
            raise DeliveryFailed("no URL to deliver to", retryable=False)
        try:
            response = await self._client.post(
                self._url,
                content=entry.body,
                headers={"Idempotency-Key": entry.idempotency_key, "Content-Type": "application/json"},
                timeout=self._settings.delivery_timeout_s,
            )
        except httpx.TimeoutException as exc:
            raise DeliveryFailed("timeout", retryable=True) from exc
        except (httpx.NetworkError, httpx.RemoteProtocolError) as exc:
            raise DeliveryFailed(f"network error: {type(exc).__name__}", retryable=True) from exc
        except httpx.HTTPError as exc:
            raise DeliveryFailed(f"transport error: {type(exc).__name__}", retryable=False) from exc
        code = response.status_code
        if 200 <= code < 300:
            return code
        if code == 429 or code >= 500:
            raise DeliveryFailed("http", retryable=True, status_code=code, retry_after_s=_retry_after(response))
        raise DeliveryFailed("http", retryable=False, status_code=code)
