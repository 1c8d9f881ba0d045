"""The console's HTTP API against a real redis-server: auth, roles, limits, SSE and the audit log."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import redis.asyncio as aioredis

from alerting import keys
from alerting.console import write_demo_tokens
from alerting.console.auth import Principal, RateLimiter, TicketSigner, TokenStore
from alerting.decision import Decision
from alerting.dispatcher import Dispatcher
from alerting.service import DispatchService, start_console
from core.clock import ManualClock
from core.errors import InvalidTokensFile, RateLimited
from core.settings import Settings
from sandbox.services import RunningService

pytestmark = pytest.mark.integration

HOME = (31.2304, 121.4737)
KM_LAT = 1 / 111.2
T0 = 1_700_000_000_000
BURST = 6


@pytest.fixture
def tokens(tmp_path: Path) -> dict[str, str]:
    made = write_demo_tokens(tmp_path, ["p1", "p2"])
    return {
        "path": str(made.path),
        "dispatcher": made.dispatcher,
        "admin": made.admin,
        "p1": made.responders["p1"],
        "p2": made.responders["p2"],
    }


@pytest.fixture
def settings(tokens: dict[str, str]) -> Settings:
    return Settings(
        console_tokens_file=Path(tokens["path"]),
        console_responder_burst=BURST,
        console_responder_rate_per_s=0.5,
        responder_search_radii_km=(2.0, 5.0),
    )


@pytest.fixture
def clock() -> ManualClock:
    """The console's clock (and the test's dispatcher's): tickets expire and buckets refill when a test says so."""
    return ManualClock()


@pytest.fixture
async def console(
    r: aioredis.Redis, redis_server: RunningService, settings: Settings, clock: ManualClock
) -> AsyncIterator[DispatchService]:
    server = await start_console(settings, redis_server.url, watch_acks=False, clock=clock)
    yield server
    await server.stop()


@pytest.fixture
async def http(console: DispatchService) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=console.url, timeout=5) as client:
        yield client


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _responder(rid: str, km_north: float) -> dict[str, Any]:
    lat = HOME[0] + km_north * KM_LAT
    return {"responder_id": rid, "kind": "police", "unit": "U1", "lat": lat, "lon": HOME[1], "status": "available"}


async def _task(r: aioredis.Redis, settings: Settings, phone: str, clock: ManualClock) -> dict[str, Any]:
    d = Dispatcher(r, settings, clock=clock)
    task = await d.handle(
        Decision(phone, f"e-{phone}", T0, 0.95, 3, "m-1", ("asked to move savings to a 'safe account'",), *HOME)
    )
    assert task is not None
    return task


async def test_page_and_static_files(http: httpx.AsyncClient) -> None:
    page = await http.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert 'src="/static/console.js"' in page.text and "http" not in page.text.split("<body>")[1]
    js = await http.get("/static/console.js")
    assert js.status_code == 200 and "EventSource" in js.text
    assert (await http.get("/static/../server.py")).status_code in (403, 404)


async def test_authentication_and_roles(
    r: aioredis.Redis, http: httpx.AsyncClient, tokens: dict[str, str], settings: Settings, clock: ManualClock
) -> None:
    no_token = await http.get("/api/cases")
    assert no_token.status_code == 401 and no_token.headers["www-authenticate"] == "Bearer"
    assert (await http.get("/api/cases", headers=auth("x" * 43))).status_code == 401
    assert (await http.get("/api/cases", headers={"Authorization": tokens["dispatcher"]})).status_code == 401
    assert (await http.get("/api/me", headers=auth(tokens["dispatcher"]))).json() == {
        "name": "demo-dispatcher",
        "role": "dispatcher",
        "responder_id": None,
    }

    await Dispatcher(r, settings, clock=clock).registry.load([_responder("p1", 0.3), _responder("p2", 0.9)])
    task = await _task(r, settings, "+8613800003001", clock)
    tid = task["task_id"]
    assert task["responder_id"] == "p1"

    # Wrong role: 403.
    p1 = auth(tokens["p1"])
    assert (await http.get("/api/responders", headers=p1)).status_code == 403
    assert (await http.post(f"/api/tasks/{tid}/assign", headers=p1, json={"responder_id": "p2"})).status_code == 403
    beat = {"lat": HOME[0], "lon": HOME[1]}
    assert (
        await http.post("/api/responders/p1/heartbeat", headers=auth(tokens["dispatcher"]), json=beat)
    ).status_code == 403

    # A responder cannot touch (or read) another responder's task.
    p2 = auth(tokens["p2"])
    assert (
        await http.post(f"/api/tasks/{tid}/transition", headers=p2, json={"state": "acknowledged"})
    ).status_code == 403
    assert (await http.get(f"/api/tasks/{tid}", headers=p2)).status_code == 403
    assert (await http.post("/api/responders/p1/heartbeat", headers=p2, json=beat)).status_code == 403
    ok = await http.post(f"/api/tasks/{tid}/transition", headers=p1, json={"state": "acknowledged"})
    assert ok.status_code == 200 and ok.json()["state"] == "acknowledged"
    # Invalid transition: 409; bad body: 400; unknown task: 404.
    again = await http.post(f"/api/tasks/{tid}/transition", headers=p1, json={"state": "acknowledged"})
    assert again.status_code == 409
    assert (await http.post(f"/api/tasks/{tid}/transition", headers=p1, content=b"[1,")).status_code == 400
    assert (await http.post("/api/tasks/nope/transition", headers=p1, json={"state": "en_route"})).status_code == 404

    denied = [f for _, f in await r.xrange(keys.AUDIT) if f[b"action"] == b"denied"]
    assert {keys.text(f[b"actor"]) for f in denied} == {"responder-p1", "responder-p2", "demo-dispatcher"}


async def test_no_tokens_file_refuses_everything(r: aioredis.Redis, redis_server: RunningService) -> None:
    server = await start_console(Settings(), redis_server.url, watch_acks=False)
    try:
        async with httpx.AsyncClient(base_url=server.url) as client:
            assert (await client.get("/api/cases", headers=auth("a" * 43))).status_code == 401
            assert (await client.get("/")).status_code == 200
    finally:
        await server.stop()


async def test_tokens_file_is_validated(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    for content in (
        {"short": {"role": "admin", "name": "x"}},
        {"y" * 30: {"role": "root", "name": "x"}},
        {"z" * 30: {"role": "responder", "name": "no id"}},
        ["not", "an", "object"],
    ):
        bad.write_text(json.dumps(content))
        with pytest.raises(InvalidTokensFile):
            TokenStore.from_file(bad)
    made = write_demo_tokens(tmp_path / "demo", ["p9"])
    assert made.path.stat().st_mode & 0o777 == 0o600
    store = TokenStore.from_file(made.path)
    assert len(store) == 3 and store.authenticate(made.responders["p9"]).responder_id == "p9"  # type: ignore[union-attr]
    assert store.authenticate(made.admin[:-1]) is None


async def test_body_too_large(http: httpx.AsyncClient, tokens: dict[str, str], settings: Settings) -> None:
    big = {"responder_id": "p1", "padding": "x" * (settings.console_max_body_bytes + 10)}
    declared = await http.post("/api/tasks/t1/assign", headers=auth(tokens["dispatcher"]), json=big)
    assert declared.status_code == 413

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: the limit applies while reading
        for _ in range(40):
            yield b"x" * 1024

    streamed = await http.post("/api/tasks/t1/assign", headers=auth(tokens["dispatcher"]), content=chunks())
    assert streamed.status_code == 413


async def _stalled_chunked_post(url: str, path: str, headers: str, wait_s: float) -> tuple[bytes, float, bytes]:
    """POST with chunked encoding: the headers and one chunk, then nothing. The status line (b"" if the
    server closed without answering), the seconds it took, and whatever followed it before the close."""
    host, port = url.removeprefix("http://").rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    started = time.monotonic()
    try:
        writer.write(
            f"POST {path} HTTP/1.1\r\nHost: {host}\r\n{headers}"
            "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n".encode()
        )
        await writer.drain()
        await asyncio.sleep(0.2)  # a segment of its own: the handler is already reading the body
        writer.write(b'10\r\n{"responder_id": ')  # a 16-byte chunk announced, 15 bytes sent: stalled
        await writer.drain()
        async with asyncio.timeout(wait_s):
            status_line = await reader.readline()
            rest = await reader.read()  # to the close: the server must hang up, not wait for more body
        return status_line.rstrip(), time.monotonic() - started, rest
    finally:
        writer.close()


async def test_stalled_request_body_gets_408_and_a_closed_connection(
    r: aioredis.Redis, redis_server: RunningService, tokens: dict[str, str]
) -> None:
    from alerting.metrics import CONSOLE_DENIED

    settings = Settings(console_tokens_file=Path(tokens["path"]), console_body_timeout_s=1.0)
    denied = CONSOLE_DENIED.labels(reason="body_timeout")
    before = denied._value.get()
    server = await start_console(settings, redis_server.url, watch_acks=False)
    try:
        status_line, took, rest = await _stalled_chunked_post(
            server.url, "/api/tasks/t1/assign", f"Authorization: Bearer {tokens['dispatcher']}\r\n", wait_s=10
        )
        # The console answers while the client is still connected and sending nothing.
        async with httpx.AsyncClient(base_url=server.url, timeout=5) as http:
            assert (await http.get("/api/me", headers=auth(tokens["dispatcher"]))).status_code == 200
    finally:
        await server.stop()
    assert status_line.split()[1:2] == [b"408"], status_line
    assert 1.0 <= took < 5.0, took
    assert rest.endswith(b'{"error": "Request Timeout"}'), rest  # then the server hung up
    assert denied._value.get() == before + 1


async def test_receiver_answers_a_stalled_body_with_408() -> None:
    from sandbox.receiver import Receiver, ReceiverServer

    server = ReceiverServer(Receiver(body_timeout_s=1.0))
    await server.start()
    try:
        assert server.base_url is not None
        status_line, took, _ = await _stalled_chunked_post(server.base_url, "/tasks", "", wait_s=10)
    finally:
        await server.stop()
    assert status_line.split()[1:2] == [b"408"], status_line
    assert 1.0 <= took < 5.0, took
    assert server.receiver.stats()["timed_out"] == 1 and not server.receiver.tasks


async def test_responder_rate_limit(
    r: aioredis.Redis, http: httpx.AsyncClient, tokens: dict[str, str], clock: ManualClock
) -> None:
    await Dispatcher(r, Settings(), clock=clock).registry.load([_responder("p1", 0.3)])
    beat = {"lat": HOME[0], "lon": HOME[1], "status": "available"}
    codes = [
        (await http.post("/api/responders/p1/heartbeat", headers=auth(tokens["p1"]), json=beat)).status_code
        for _ in range(BURST + 2)
    ]
    assert codes[:BURST] == [200] * BURST and codes[BURST:] == [429, 429]
    limited = await http.post("/api/responders/p1/heartbeat", headers=auth(tokens["p1"]), json=beat)
    # The console's clock stood still: an empty bucket, one token 1 / 0.5 s away.
    assert limited.status_code == 429 and limited.headers["retry-after"] == "2"
    # Buckets are per token: another responder and the dispatcher are unaffected.
    assert (await http.get("/api/me", headers=auth(tokens["p2"]))).status_code == 200
    assert (await http.get("/api/cases", headers=auth(tokens["dispatcher"]))).status_code == 200
    clock.advance(1.9)
    assert (await http.post("/api/responders/p1/heartbeat", headers=auth(tokens["p1"]), json=beat)).status_code == 429
    clock.advance(0.1 + 2.0)  # refilled at 0.5/s: the one token the refused call did not get, and one more
    codes = [
        (await http.post("/api/responders/p1/heartbeat", headers=auth(tokens["p1"]), json=beat)).status_code
        for _ in range(3)
    ]
    assert codes == [200, 200, 429]


def test_token_bucket_refills() -> None:
    clock = ManualClock()
    limiter = RateLimiter(rate_per_s=2.0, burst=2, clock=clock)
    limiter.take("k")
    limiter.take("k")
    clock.advance(0.1)
    with pytest.raises(RateLimited) as caught:
        limiter.take("k")
    assert caught.value.retry_after_s == pytest.approx(0.4)  # 0.2 tokens refilled, 0.8 to go at 2/s
    clock.advance(0.5)
    limiter.take("k")
    clock.advance(3600)  # a long quiet spell refills only up to the burst
    limiter.take("k")
    limiter.take("k")
    with pytest.raises(RateLimited):
        limiter.take("k")


async def test_cases_views_assign_and_outcome(
    r: aioredis.Redis, http: httpx.AsyncClient, tokens: dict[str, str], settings: Settings, clock: ManualClock
) -> None:
    d = Dispatcher(r, settings, clock=clock)
    await d.registry.load([_responder("p1", 0.3), _responder("p2", 0.9)])
    phone = "+8613800003002"
    task = await _task(r, settings, phone, clock)
    tid = task["task_id"]

    desk = auth(tokens["dispatcher"])
    clock.advance(90.5)
    listed = (await http.get("/api/cases", headers=desk)).json()
    (case,) = listed["cases"]
    assert case["subscriber"] == phone and case["level"] == 3 and case["age_s"] == 90.5
    assert listed["now_ms"] == clock.now_ms()
    assert case["reasons"] == ["asked to move savings to a 'safe account'"]
    assert [(t["task_id"], t["state"], t["responder_id"]) for t in case["tasks"]] == [(tid, "assigned", "p1")]
    # A responder sees its own case, pseudonymised; another responder sees nothing.
    (own,) = (await http.get("/api/cases", headers=auth(tokens["p1"]))).json()["cases"]
    assert own["subscriber"].startswith("p_") and phone not in json.dumps(own)
    assert (await http.get("/api/cases", headers=auth(tokens["p2"]))).json()["cases"] == []
    detail = (await http.get(f"/api/tasks/{tid}", headers=auth(tokens["p1"]))).json()
    assert "subscriber" not in detail["task"] and detail["state"]["state"] == "assigned"

    # The desk moves the task to p2 by hand; p1 is free again.
    moved = await http.post(f"/api/tasks/{tid}/assign", headers=desk, json={"responder_id": "p2"})
    assert moved.status_code == 200 and moved.json()["responder_id"] == "p2"
    assert (await d.registry.get("p1"))["status"] == "available"  # type: ignore[index]
    busy = await http.post(f"/api/tasks/{tid}/assign", headers=desk, json={"responder_id": "p2"})
    assert busy.status_code == 409
    ghost = await http.post(f"/api/tasks/{tid}/assign", headers=desk, json={"responder_id": "ghost"})
    assert ghost.status_code == 404

    p2 = auth(tokens["p2"])
    for state in ("acknowledged", "en_route", "on_scene"):
        assert (await http.post(f"/api/tasks/{tid}/transition", headers=p2, json={"state": state})).status_code == 200
    done = await http.post(
        f"/api/tasks/{tid}/transition", headers=p2, json={"state": "resolved", "outcome": "money_lost"}
    )
    assert done.status_code == 200 and done.json()["outcome"] == "money_lost"
    assert (await http.get("/api/cases", headers=desk)).json()["cases"] == []
    label = orjson.loads((await r.xrange(keys.LABELS))[0][1][b"label"])
    assert label["outcome"] == "money_lost" and label["subscriber"] == phone

    # Responders list for the desk, with staleness.
    listed_r = (await http.get("/api/responders", headers=desk)).json()["responders"]
    assert {x["responder_id"]: (x["status"], x["stale"]) for x in listed_r} == {
        "p1": ("available", False),
        "p2": ("available", False),
    }

    audit = [
        (keys.text(f[b"actor"]), keys.text(f[b"role"]), keys.text(f[b"action"])) for _, f in await r.xrange(keys.AUDIT)
    ]
    assert ("demo-dispatcher", "dispatcher", "view_cases") in audit
    assert ("responder-p1", "responder", "view_cases") in audit
    assert ("demo-dispatcher", "dispatcher", "assign") in audit
    assert ("responder-p2", "responder", "transition:resolved") in audit
    entry = next(f for _, f in await r.xrange(keys.AUDIT) if f[b"action"] == b"assign")
    assert keys.text(entry[b"task_id"]) == tid and keys.text(entry[b"case_key"]) == task["case_key"]
    assert int(entry[b"at_ms"]) == clock.now_ms()

    # Responders that stop reporting go stale on the desk's list.
    clock.advance(settings.responder_stale_s + 1)
    listed_r = (await http.get("/api/responders", headers=desk)).json()["responders"]
    assert [x["stale"] for x in listed_r] == [True, True]


async def test_heartbeat_moves_and_validates(
    r: aioredis.Redis, http: httpx.AsyncClient, tokens: dict[str, str], clock: ManualClock
) -> None:
    await Dispatcher(r, Settings(), clock=clock).registry.load([_responder("p1", 0.3)])
    clock.advance(42)
    p1 = auth(tokens["p1"])
    ok = await http.post("/api/responders/p1/heartbeat", headers=p1, json={"lat": 31.3, "lon": 121.5})
    assert ok.status_code == 200 and ok.json() == {"responder_id": "p1", "status": "available"}
    stored = await r.hgetall(keys.responder("p1"))
    assert float(stored[b"lat"]) == 31.3 and int(stored[b"seen_ms"]) == clock.now_ms()
    off = await http.post(
        "/api/responders/p1/heartbeat", headers=p1, json={"lat": 31.3, "lon": 121.5, "status": "off_duty"}
    )
    assert off.json()["status"] == "off_duty"
    assert any(f[b"action"] == b"responder_status" for _, f in await r.xrange(keys.AUDIT))
    bad = await http.post("/api/responders/p1/heartbeat", headers=p1, json={"lat": "north", "lon": 121.5})
    assert bad.status_code == 400
    far = await http.post("/api/responders/p1/heartbeat", headers=p1, json={"lat": 95.0, "lon": 121.5})
    assert far.status_code == 400
    admin = auth(tokens["admin"])
    assert (
        await http.post("/api/responders/p9/heartbeat", headers=admin, json={"lat": 1, "lon": 1})
    ).status_code == 404


async def test_sse_ticket_and_stream(
    r: aioredis.Redis, http: httpx.AsyncClient, tokens: dict[str, str], settings: Settings, clock: ManualClock
) -> None:
    assert (await http.get("/api/events")).status_code == 401
    assert (await http.get("/api/events", params={"ticket": "forged.ticket"})).status_code == 401
    assert (await http.post("/api/events/ticket")).status_code == 401
    foreign = TicketSigner(b"k" * 32, ttl_s=1, clock=ManualClock(start_ms=0))
    forged, _ = foreign.issue(Principal("someone", "dispatcher", None, "0" * 16))
    assert (await http.get("/api/events", params={"ticket": forged})).status_code == 401

    ttl_ms = int(settings.console_ticket_ttl_s * 1000)
    old = (await http.post("/api/events/ticket", headers=auth(tokens["dispatcher"]))).json()
    assert old["expires_ms"] == clock.now_ms() + ttl_ms
    clock.advance(settings.console_ticket_ttl_s + 0.001)  # one ms past its expiry
    assert (await http.get(old["url"])).status_code == 401

    got = (await http.post("/api/events/ticket", headers=auth(tokens["dispatcher"]))).json()
    assert got["expires_ms"] == clock.now_ms() + ttl_ms
    clock.advance(settings.console_ticket_ttl_s)  # the last ms of its life: still good
    received: list[dict[str, Any]] = []
    opened = asyncio.Event()

    async def listen() -> None:
        async with http.stream("GET", got["url"]) as stream:
            assert stream.status_code == 200
            assert stream.headers["content-type"].startswith("text/event-stream")
            opened.set()
            async for line in stream.aiter_lines():
                if line.startswith("data: "):
                    received.append(json.loads(line[6:]))
                    return

    listener = asyncio.create_task(listen())
    # Wait for the stream's headers (its queue is subscribed to the hub before they are sent) and for the
    # hub's Redis subscription, instead of sleeping a guess.
    await asyncio.wait_for(opened.wait(), 10)
    async with asyncio.timeout(10):
        while not dict(await r.pubsub_numsub(keys.CONSOLE_CHANNEL)).get(keys.CONSOLE_CHANNEL.encode()):
            await asyncio.sleep(0.01)
    await Dispatcher(r, settings, clock=clock).registry.load([_responder("p1", 0.3)])
    task = await _task(r, settings, "+8613800003003", clock)
    await asyncio.wait_for(listener, 5)
    assert received == [
        {
            "type": "task",
            "task_id": task["task_id"],
            "case_key": task["case_key"],
            "level": 3,
            "state": "assigned",
            "responder_id": "p1",
            "at_ms": received[0]["at_ms"],
        }
    ]
    assert "+86" not in json.dumps(received)  # change notices never carry the subscriber's number


async def test_tokens_are_added_and_revoked_without_a_restart(
    http: httpx.AsyncClient, tokens: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from alerting.console import auth as auth_module

    monkeypatch.setattr(auth_module, "TOKENS_RECHECK_S", 0.0)
    assert (await http.get("/api/me", headers=auth(tokens["p1"]))).status_code == 200
    path = Path(tokens["path"])
    entries = json.loads(path.read_text())
    del entries[tokens["p1"]]  # p1's phone was lost
    newcomer = "n" * 40
    entries[newcomer] = {"role": "dispatcher", "name": "night-desk"}
    path.write_text(json.dumps(entries))
    assert (await http.get("/api/me", headers=auth(tokens["p1"]))).status_code == 401
    me = await http.get("/api/me", headers=auth(newcomer))
    assert me.status_code == 200 and me.json()["name"] == "night-desk"
    path.write_text("{ broken")  # a half-written edit keeps the tokens last read
    assert (await http.get("/api/me", headers=auth(newcomer))).status_code == 200


async def test_a_retried_step_with_its_idempotency_key_gets_the_first_answer(
    r: aioredis.Redis, http: httpx.AsyncClient, tokens: dict[str, str], settings: Settings
) -> None:
    dispatcher = Dispatcher(r, settings)
    await dispatcher.registry.load(
        [{"responder_id": "p1", "kind": "police", "unit": "U1", "lat": HOME[0], "lon": HOME[1], "status": "available"}]
    )
    task = await dispatcher.handle(Decision("+8613800007001", "e-idem", T0, 0.95, 3, "m", ("r",), *HOME))
    assert task is not None and task["responder_id"] == "p1"
    url = f"/api/tasks/{task['task_id']}/transition"
    step = {"state": "acknowledged"}
    first = await http.post(url, json=step, headers={**auth(tokens["p1"]), "Idempotency-Key": "k-1"})
    again = await http.post(url, json=step, headers={**auth(tokens["p1"]), "Idempotency-Key": "k-1"})
    assert first.status_code == again.status_code == 200 and first.json() == again.json()
    unkeyed = await http.post(url, json=step, headers=auth(tokens["p1"]))
    assert unkeyed.status_code == 409  # the same step without its key is a step already taken
    events = [e for e in await r.lrange(keys.task_events(task["task_id"]), 0, -1) if b"acknowledged" in e]
    assert len(events) == 1
    mine = await http.get("/api/my/task", headers=auth(tokens["p1"]))
    assert mine.status_code == 200 and mine.json()["task"]["subscriber"] == "+8613800007001"
    assert mine.json()["task"]["next"] == ["en_route", "resolved"]
    assert (await http.get("/api/my/task", headers=auth(tokens["dispatcher"]))).status_code == 403


async def test_closed_cases_are_found_by_number_responder_case_and_date(
    r: aioredis.Redis, http: httpx.AsyncClient, tokens: dict[str, str], settings: Settings, clock: ManualClock
) -> None:
    dispatcher = Dispatcher(r, settings, clock=clock)
    await dispatcher.registry.load(
        [{"responder_id": "p1", "kind": "police", "unit": "U1", "lat": HOME[0], "lon": HOME[1], "status": "available"}]
    )
    phone = "+8613800007002"
    task = await dispatcher.handle(Decision(phone, "e-closed", T0, 0.95, 3, "m", ("r",), *HOME))
    assert task is not None
    url = f"/api/tasks/{task['task_id']}/transition"
    for body in ({"state": "acknowledged"}, {"state": "resolved", "outcome": "false_alarm"}):
        assert (await http.post(url, json=body, headers=auth(tokens["p1"]))).status_code == 200
    desk = auth(tokens["dispatcher"])

    async def found(**query: str) -> list[str]:
        answer = await http.get("/api/closed", params=query, headers=desk)
        assert answer.status_code == 200, answer.text
        return [t["task_id"] for t in answer.json()["tasks"]]

    assert await found(number=phone) == [task["task_id"]]
    assert await found(responder="p1") == [task["task_id"]]
    assert await found(case=task["case_key"][:12]) == [task["task_id"]]
    assert await found(number="+8613800000000") == []
    now = clock.now_ms()
    assert await found(from_ms=str(now + 60_000), to_ms=str(now + 120_000)) == []
    answer = await http.get("/api/closed", params={"number": phone}, headers=desk)
    assert answer.json()["tasks"][0]["outcome"] == "false_alarm"
    assert (await http.get("/api/closed", headers=auth(tokens["p1"]))).status_code == 403
    # The audit says who searched for what, with the number only as its pseudonym.
    entries = [f for _, f in await r.xrange(keys.AUDIT) if f.get(b"action") == b"search_closed"]
    assert entries and all(phone.encode() not in b"".join(f.values()) for f in entries)
