"""A stand-in dispatch endpoint (what the police app's backend would be) and a stand-in bank (``/holds``),
for the demo, the benchmark and the tests."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
from typing import Any

import orjson
from aiohttp import web

from alerting import answer_and_close

__all__ = ["HOLD_REQUIRED", "REQUIRED", "Receiver", "ReceiverServer", "main"]

# The task.v1 fields a real endpoint would refuse a task without.
REQUIRED = (
    "task_id",
    "case_key",
    "subscriber",
    "level",
    "score",
    "reasons",
    "responder_id",
    "created_ms",
    "model_version",
    "idempotency_key",
)
# The hold.v1 fields a bank would refuse an instruction without.
HOLD_REQUIRED = ("hold_id", "action", "transfer_event_id", "payer_account", "idempotency_key", "expires_ms")


class Receiver:
    """The endpoint's in-memory state and handlers; ``ReceiverServer`` serves it over HTTP."""

    def __init__(self, body_timeout_s: float = 10.0) -> None:
        """``body_timeout_s``: a POST body not fully received in this time gets 408 and a closed connection."""
        self.body_timeout_s = body_timeout_s
        self.timed_out = 0
        self.tasks: list[dict[str, Any]] = []
        self.holds: list[dict[str, Any]] = []  # hold.v1 messages (hold, release, cancel), once per key
        self.keys: set[str] = set()
        self.requests = 0
        self.duplicates = 0
        self.failed = 0
        self._fail_next = 0
        self._fail_status = 503
        self._delay_s = 0.0

    def fail_next(self, n: int, status: int = 503) -> None:
        """Answer the next ``n`` POSTs with ``status`` (without storing them)."""
        self._fail_next, self._fail_status = n, status

    def set_delay(self, seconds: float) -> None:
        """Wait this long before answering each POST (to provoke client timeouts)."""
        self._delay_s = seconds

    def stats(self) -> dict[str, int]:
        """Counters of what the endpoint saw."""
        return {
            "received": len(self.tasks),
            "duplicates": self.duplicates,
            "requests": self.requests,
            "failed": self.failed,
            "timed_out": self.timed_out,
        }

    async def post_task(self, request: web.Request) -> web.Response:
        """Store a task once per Idempotency-Key: 201 first time, 200 for a repeat."""
        return await self._store(request, REQUIRED, self.tasks, "task_id")

    async def post_hold(self, request: web.Request) -> web.Response:
        """Accept a hold.v1 instruction once per Idempotency-Key, as a bank would: 201, then 200 for a repeat."""
        return await self._store(request, HOLD_REQUIRED, self.holds, "hold_id")

    async def _store(
        self, request: web.Request, required: tuple[str, ...], into: list[dict[str, Any]], id_field: str
    ) -> web.Response:
        """Validate a JSON POST and keep it once per Idempotency-Key (tasks and holds share the key space)."""
        self.requests += 1
        try:
            async with asyncio.timeout(self.body_timeout_s):
                body = await request.read()
        except TimeoutError:  # headers came, the body stalled: do not hold this handler until the client leaves
            self.timed_out += 1
            response = web.json_response({"error": "request body not received in time"}, status=408)
            return await answer_and_close(request, response)
        if self._delay_s > 0:  # after reading the body: a slow backend, not a slow network
            await asyncio.sleep(self._delay_s)
        if self._fail_next > 0:
            self._fail_next -= 1
            self.failed += 1
            return web.json_response({"error": "injected failure"}, status=self._fail_status)
        try:
            message = orjson.loads(body)
        except orjson.JSONDecodeError:
            return web.json_response({"error": "body is not JSON"}, status=400)
        if not isinstance(message, dict):
            return web.json_response({"error": "body is not a JSON object"}, status=400)
        missing = [f for f in required if f not in message]
        if missing:
            return web.json_response({"error": f"missing fields: {', '.join(missing)}"}, status=422)
        key = request.headers.get("Idempotency-Key") or str(message["idempotency_key"])
        if key in self.keys:
            self.duplicates += 1
            return web.json_response({"status": "duplicate", id_field: message[id_field]}, status=200)
        self.keys.add(key)
        into.append(message)
        return web.json_response({"status": "created", id_field: message[id_field]}, status=201)

    async def list_tasks(self, request: web.Request) -> web.Response:
        """Every stored task, in arrival order."""
        return web.Response(body=orjson.dumps(self.tasks), content_type="application/json")

    async def get_stats(self, request: web.Request) -> web.Response:
        """The counters."""
        return web.json_response(self.stats())

    def app(self) -> web.Application:
        """An aiohttp application serving POST /tasks, GET /tasks, POST /holds and GET /stats."""
        app = web.Application()
        app.router.add_post("/tasks", self.post_task)
        app.router.add_post("/holds", self.post_hold)
        app.router.add_get("/tasks", self.list_tasks)
        app.router.add_get("/stats", self.get_stats)
        return app


class ReceiverServer:
    """Runs a ``Receiver`` on a local port; the POST URL is ``base_url + "/tasks"``."""

    def __init__(self, receiver: Receiver | None = None) -> None:
        self.receiver = receiver or Receiver()
        self._runner: web.AppRunner | None = None
        self.base_url: str | None = None

    @property
    def tasks_url(self) -> str:
        """Where the deliverer POSTs."""
        if self.base_url is None:
            raise RuntimeError("receiver not started")
        return self.base_url + "/tasks"

    @property
    def holds_url(self) -> str:
        """Where the hold deliverer POSTs (the bank's endpoint)."""
        if self.base_url is None:
            raise RuntimeError("receiver not started")
        return self.base_url + "/holds"

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Start serving (port 0 = any free port); returns the base URL."""
        runner = web.AppRunner(self.receiver.app(), access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, host, port)
        try:
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        bound_host, bound_port = runner.addresses[0][:2]
        self.base_url = f"http://{bound_host}:{bound_port}"
        return self.base_url

    async def stop(self) -> None:
        """Stop serving; the received tasks stay readable on ``receiver``."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


async def _serve(host: str, port: int) -> None:
    server = ReceiverServer()
    url = await server.start(host, port)
    print(f"stand-in dispatch endpoint at {url}/tasks", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await server.stop()


def main() -> None:
    """``python -m sandbox.receiver --port 8088``: run the stand-in endpoint until interrupted."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8088)
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(args.host, args.port))


if __name__ == "__main__":
    main()
