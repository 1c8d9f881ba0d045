"""The console's aiohttp app: responder and dispatcher API, SSE change stream, and the browser page."""

from __future__ import annotations

import asyncio
import logging
import math
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web
from redis.asyncio import Redis

from alerting import keys
from alerting.audit import publish_change, record_audit
from alerting.console import views
from alerting.console.auth import ADMIN, DISPATCHER, RESPONDER, Principal, RateLimiter, TicketSigner, TokenStore
from alerting.console.hub import ChangeHub
from alerting.holds import RELEASE, HoldStore
from alerting.lifecycle import ACKNOWLEDGED, ALLOWED, EN_ROUTE, ON_SCENE, OUTCOMES, RESOLVED, TaskLifecycle
from alerting.metrics import CONSOLE_DENIED
from alerting.responders import haversine_km
from alerting.tasks import ASSIGNED, TaskStore
from alerting.webutil import answer_and_close
from core.clock import SYSTEM_CLOCK, Clock
from core.errors import (
    AlertingError,
    AuthenticationRequired,
    BadRequest,
    ConsoleError,
    InvalidResponder,
    InvalidTransition,
    NoResponderAvailable,
    PermissionDenied,
    RateLimited,
    UnknownHold,
    UnknownResponder,
    UnknownTask,
)
from core.levels import levels
from core.pseudonym import pseudonymise
from core.settings import Settings

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).parent / "static"
RESPONDER_STATES = (ACKNOWLEDGED, EN_ROUTE, ON_SCENE, RESOLVED)  # what a responder may report on its own task
OPEN_FOR_RESPONDER = frozenset({ASSIGNED, ACKNOWLEDGED, EN_ROUTE, ON_SCENE})  # a task the app shows as current
MAX_NOTE_CHARS = 1000
CLOSED_SEARCH_DEFAULT_MS = 7 * 86_400_000  # a search without dates looks at the last week
IDEMPOTENCY_TTL_S = 86_400  # a phone offline for a day still gets the first answer to its retried step
SSE_KEEPALIVE_S = 15.0
# The page loads only its own files and talks only to its own origin: no CDN, no tiles, no inline script.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class Console:
    """Everything the handlers share, stored once on the app."""

    settings: Settings
    redis: Redis
    lifecycle: TaskLifecycle
    tasks: TaskStore
    holds: HoldStore
    tokens: TokenStore
    tickets: TicketSigner
    limiter: RateLimiter
    hub: ChangeHub
    page: bytes
    app_page: bytes
    clock: Clock


CONSOLE = web.AppKey("console", Console)


def _error(status: int, message: str, **headers: str) -> web.Response:
    return web.json_response({"error": message}, status=status, headers=headers or None)


def _status_of(exc: AlertingError) -> int:
    if isinstance(exc, ConsoleError):
        return exc.status
    if isinstance(exc, UnknownTask | UnknownResponder | UnknownHold):
        return 404
    if isinstance(exc, InvalidTransition | NoResponderAvailable):
        return 409
    if isinstance(exc, InvalidResponder):
        return 400
    return 500


@web.middleware
async def security_headers(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Headers every response carries; API answers are never cached."""
    response = await handler(request)
    if not response.prepared:  # an SSE stream (or a 408, see errors) set its own before it started
        _secure(request, response)
    return response


def _secure(request: web.Request, response: web.StreamResponse) -> None:
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "no-referrer")
    response.headers.setdefault("X-Frame-Options", "DENY")
    response.headers.setdefault("Content-Security-Policy", CSP)
    if request.path.startswith("/api/"):
        response.headers.setdefault("Cache-Control", "no-store")


@web.middleware
async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Turn the alerting errors into JSON answers; refused calls are counted (and audited when the caller is known)."""
    console = request.app[CONSOLE]
    try:
        # Refuse a declared oversize body before reading it (and before any auth work).
        if request.content_length is not None and request.content_length > console.settings.console_max_body_bytes:
            raise web.HTTPRequestEntityTooLarge(
                max_size=console.settings.console_max_body_bytes, actual_size=request.content_length
            )
        # Bodies are small JSON and no client compresses them; refuse compressed ones unread (aiohttp 3.14 can
        # leave a handler waiting forever on a broken deflate body that arrives after its headers).
        if request.body_exists and request.headers.get("Content-Encoding", "identity").strip().lower() != "identity":
            raise web.HTTPUnsupportedMediaType(text="compressed request bodies are not accepted")
        return await handler(request)
    except RateLimited as exc:
        CONSOLE_DENIED.labels(reason="rate_limited").inc()
        return _error(429, str(exc), **{"Retry-After": str(max(1, math.ceil(exc.retry_after_s)))})
    except AuthenticationRequired as exc:
        CONSOLE_DENIED.labels(reason="unauthenticated").inc()
        return _error(401, str(exc) or "authentication required", **{"WWW-Authenticate": "Bearer"})
    except PermissionDenied as exc:
        CONSOLE_DENIED.labels(reason="forbidden").inc()
        who = _principal_of(request)
        if who is not None:
            await record_audit(
                console.redis,
                who.actor,
                "denied",
                at_ms=console.clock.now_ms(),
                method=request.method,
                path=request.path,
            )
        return _error(403, str(exc) or "forbidden")
    except AlertingError as exc:
        status = _status_of(exc)
        if status >= 500:
            log.exception("console: %s %s failed", request.method, request.path)
            return _error(500, "internal error")
        return _error(status, str(exc))
    except web.HTTPException as exc:
        if exc.status == 413:
            CONSOLE_DENIED.labels(reason="too_large").inc()
        if exc.status == 408:
            CONSOLE_DENIED.labels(reason="body_timeout").inc()
            response = _error(408, exc.reason)
            _secure(request, response)
            return await answer_and_close(request, response)
        if exc.status >= 400:
            return _error(exc.status, exc.reason)
        raise


@web.middleware
async def authenticate(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Bearer token on every /api/ route but the SSE stream (which takes a ticket); responders are rate-limited."""
    if not request.path.startswith("/api/") or request.path == "/api/events":
        return await handler(request)
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise AuthenticationRequired("missing bearer token")
    who = _principal_of(request)
    if who is None:
        raise AuthenticationRequired("unknown token")
    if who.role == RESPONDER:
        request.app[CONSOLE].limiter.take(who.token_id)
    return await handler(request)


def _principal_of(request: web.Request) -> Principal | None:
    """The caller of a bearer-token request, or None.

    Resolved again wherever needed instead of stored on the request: a hash and a few compares, and no
    dependency on aiohttp's typed request keys (3.14+).
    """
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    tokens = request.app[CONSOLE].tokens
    tokens.refresh()
    return tokens.authenticate(token.strip())


def _who(request: web.Request) -> Principal:
    who = _principal_of(request)
    if who is None:
        raise AuthenticationRequired()
    return who


def _require(who: Principal, *roles: str) -> None:
    if who.role not in roles:
        raise PermissionDenied(f"role {who.role} may not do this")


async def _body(request: web.Request) -> dict[str, Any]:
    """The JSON object body (the size limit is enforced while reading, for chunked bodies too, and the
    whole body must arrive within ``console_body_timeout_s``)."""
    try:
        async with asyncio.timeout(request.app[CONSOLE].settings.console_body_timeout_s):
            raw = await request.read()
    except TimeoutError:
        raise web.HTTPRequestTimeout(text="request body not received in time") from None
    except web.RequestPayloadError as exc:  # e.g. a Content-Encoding the bytes do not match, a broken chunk
        raise BadRequest("body cannot be read") from exc
    try:
        data = orjson.loads(raw or b"{}")
    except orjson.JSONDecodeError as exc:
        raise BadRequest("body is not JSON") from exc
    if not isinstance(data, dict):
        raise BadRequest("body must be a JSON object")
    return data


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status, content_type="application/json")


# --- handlers -----------------------------------------------------------------------------------------------


async def page(request: web.Request) -> web.Response:
    """The one HTML page; it holds no data until the user logs in with a token."""
    return web.Response(body=request.app[CONSOLE].page, content_type="text/html", charset="utf-8")


def levels_json(settings: Settings) -> list[dict[str, Any]]:
    """The level table as the page reads it: number, name, action (with the operator's override), colour."""
    return [
        {
            "level": lv.number,
            "name": lv.name,
            "summary": lv.summary,
            "action": settings.level_actions.get(lv.number, lv.action),
            "colour": lv.colour,
            "css_class": lv.css_class,
        }
        for lv in levels()
    ]


def levels_css() -> str:
    """Badge and map-dot colours per level, generated from the table (so a new level needs no CSS edit)."""
    rules = [
        f".level.{lv.css_class} {{ background: {lv.colour}; }} svg .case.{lv.css_class} {{ fill: {lv.colour}; }}"
        for lv in levels()
    ]
    return "/* generated from core/levels.py */\n" + "\n".join(rules) + "\n"


async def level_table(request: web.Request) -> web.Response:
    """GET /levels.json: the level table (no secrets, so no token: the page styles itself before login)."""
    return _json({"levels": levels_json(request.app[CONSOLE].settings)})


async def level_styles(request: web.Request) -> web.Response:
    """GET /levels.css: the level colours."""
    return web.Response(text=levels_css(), content_type="text/css")


async def me(request: web.Request) -> web.Response:
    """Who the token belongs to (the page's login check)."""
    return _json(_who(request).as_dict())


async def list_cases(request: web.Request) -> web.Response:
    """Open cases with their tasks (every view is audited)."""
    console, who = request.app[CONSOLE], _who(request)
    now = console.clock.now_ms()
    cases = await views.open_cases(console.redis, console.lifecycle, who, now, console.holds)
    await record_audit(console.redis, who.actor, "view_cases", at_ms=now, count=len(cases))
    return _json({"now_ms": now, "cases": cases})


async def timeline(request: web.Request) -> web.Response:
    """GET: one case's timeline (dispatchers and admins; audited): scored events, task steps and who took them."""
    console, who = request.app[CONSOLE], _who(request)
    _require(who, DISPATCHER, ADMIN)
    case_key = request.match_info["case_key"]
    found = await views.case_timeline(console.redis, case_key, console.holds)
    if found is None:
        return _error(404, f"no case {case_key}")
    await record_audit(console.redis, who.actor, "view_timeline", at_ms=console.clock.now_ms(), case_key=case_key)
    return _json(found)


async def search_closed(request: web.Request) -> web.Response:
    """GET ?case=&responder=&number=&from_ms=&to_ms=: resolved tasks (dispatchers and admins, who see numbers;
    audited, the number only as its pseudonym)."""
    console, who = request.app[CONSOLE], _who(request)
    _require(who, DISPATCHER, ADMIN)
    now = console.clock.now_ms()
    q = request.query
    try:
        to_ms = int(q.get("to_ms") or now)
        from_ms = int(q.get("from_ms") or to_ms - CLOSED_SEARCH_DEFAULT_MS)
    except ValueError as exc:
        raise BadRequest("from_ms and to_ms are integers (ms since the epoch)") from exc
    number = q.get("number", "").strip()
    found = await views.closed_tasks(
        console.redis,
        console.lifecycle,
        from_ms=from_ms,
        to_ms=to_ms,
        case_key=q.get("case", "").strip(),
        responder_id=q.get("responder", "").strip(),
        number=number,
    )
    key = console.settings.pseudonym_key.get_secret_value().encode()
    await record_audit(
        console.redis,
        who.actor,
        "search_closed",
        at_ms=now,
        count=len(found),
        case=q.get("case", ""),
        responder=q.get("responder", ""),
        number=pseudonymise(number, key) if number else "",
    )
    return _json({"now_ms": now, "from_ms": from_ms, "to_ms": to_ms, "tasks": found})


async def list_responders(request: web.Request) -> web.Response:
    """All responders with status, position and staleness (dispatchers and admins)."""
    console, who = request.app[CONSOLE], _who(request)
    _require(who, DISPATCHER, ADMIN)
    now = console.clock.now_ms()
    found = await views.responders(console.redis, console.lifecycle.registry, now)
    return _json({"now_ms": now, "responders": found})


async def get_task(request: web.Request) -> web.Response:
    """One task's lifecycle state and history; a responder sees only its own tasks, without the clear number."""
    console, who = request.app[CONSOLE], _who(request)
    task_id = request.match_info["task_id"]
    state = await console.lifecycle.get(task_id)
    if who.role == RESPONDER and state.responder_id != who.responder_id:
        raise PermissionDenied("not your task")
    task = await console.tasks.get(task_id) or {}
    if who.role == RESPONDER:
        task = {k: v for k, v in task.items() if k != "subscriber"}
    await record_audit(
        console.redis, who.actor, "view_task", at_ms=console.clock.now_ms(), case_key=state.case_key, task_id=task_id
    )
    return _json({"task": task, "state": state.as_dict(), "events": await console.tasks.events(task_id)})


async def assign(request: web.Request) -> web.Response:
    """POST {responder_id}: (re)assign a task by hand (dispatchers and admins)."""
    console, who = request.app[CONSOLE], _who(request)
    _require(who, DISPATCHER, ADMIN)
    body = await _body(request)
    rid = body.get("responder_id")
    if not isinstance(rid, str) or not rid:
        raise BadRequest("responder_id must be a non-empty string")
    state = await console.lifecycle.assign(request.match_info["task_id"], rid, who.actor)
    return _json(state.as_dict())


async def transition(request: web.Request) -> web.Response:
    """POST {state, outcome?, note?}: report progress; responders only on their own tasks.

    With an ``Idempotency-Key`` header a repeated request (the app retrying over a flaky connection) gets the
    first answer again instead of a 409 for a step already taken.
    """
    console, who = request.app[CONSOLE], _who(request)
    task_id = request.match_info["task_id"]
    body = await _body(request)
    state, outcome, note = body.get("state"), body.get("outcome"), body.get("note")
    if not isinstance(state, str) or (outcome is not None and not isinstance(outcome, str)):
        raise BadRequest("state (and outcome, if given) must be strings")
    if note is not None and (not isinstance(note, str) or len(note) > MAX_NOTE_CHARS):
        raise BadRequest(f"note must be a string of at most {MAX_NOTE_CHARS} characters")
    replay_key = _idempotency_key(request, who, task_id)
    if replay_key is not None and (seen := await console.redis.get(replay_key)) is not None:
        return web.Response(body=seen, content_type="application/json")
    if who.role == RESPONDER:
        if state not in RESPONDER_STATES:
            raise PermissionDenied(f"a responder may report only {', '.join(RESPONDER_STATES)}")
        current = await console.lifecycle.get(task_id)
        if current.responder_id != who.responder_id:
            raise PermissionDenied("not your task")
    try:
        after = await console.lifecycle.transition(task_id, state, who.actor, outcome=outcome, note=note)
    except InvalidTransition:
        # The same request, sent twice at once: the second lost the race to the first; answer as the first did.
        if replay_key is not None and (seen := await console.redis.get(replay_key)) is not None:
            return web.Response(body=seen, content_type="application/json")
        raise
    answer = orjson.dumps(after.as_dict())
    if replay_key is not None:
        await console.redis.set(replay_key, answer, ex=IDEMPOTENCY_TTL_S)
    return web.Response(body=answer, content_type="application/json")


def _idempotency_key(request: web.Request, who: Principal, task_id: str) -> str | None:
    raw = request.headers.get("Idempotency-Key", "").strip()
    if not raw:
        return None
    if len(raw) > 128:
        raise BadRequest("Idempotency-Key is at most 128 characters")
    return f"fw:idem:{who.token_id}:{task_id}:{raw}"


async def my_task(request: web.Request) -> web.Response:
    """GET: the responder's current task (the newest open one assigned to it) with the person's number in clear,
    the place and the distance from the responder's last position; every view is audited."""
    console, who = request.app[CONSOLE], _who(request)
    _require(who, RESPONDER)
    now = console.clock.now_ms()
    raw_ids: list[Any] = await console.redis.zrange(keys.TASKS_OPEN, 0, views.MAX_OPEN_TASKS - 1)
    ids = [keys.text(t) or "" for t in raw_ids]
    states = await console.lifecycle.get_many(ids)
    mine = [st for st in states.values() if st.responder_id == who.responder_id and st.state in OPEN_FOR_RESPONDER]
    here = _position(await console.lifecycle.registry.get(who.responder_id or "") or {})
    if not mine:
        return _json({"now_ms": now, "task": None, "me": here})
    current = max(mine, key=lambda st: st.assigned_ms or 0)
    task = await console.tasks.get(current.task_id) or {}
    lat, lon = task.get("lat"), task.get("lon")
    distance = None
    if lat is not None and lon is not None and here["lat"] is not None and here["lon"] is not None:
        distance = round(haversine_km(here["lat"], here["lon"], float(lat), float(lon)), 2)
    await record_audit(
        console.redis,
        who.actor,
        "view_number",
        at_ms=now,
        case_key=current.case_key,
        task_id=current.task_id,
    )
    return _json(
        {
            "now_ms": now,
            "task": {
                "task_id": current.task_id,
                "case_key": current.case_key,
                "level": current.level,
                "state": current.state,
                "next": sorted(ALLOWED.get(current.state, frozenset()) & set(RESPONDER_STATES)),
                "subscriber": task.get("subscriber"),
                "reasons": task.get("reasons", []),
                "score": task.get("score"),
                "lat": lat,
                "lon": lon,
                "distance_km": distance,
                "assigned_ms": current.assigned_ms,
                "outcomes": list(OUTCOMES),
            },
            "me": here,
        }
    )


def _position(record: dict[str, Any]) -> dict[str, Any]:
    lat, lon = record.get("lat"), record.get("lon")
    return {
        "lat": float(lat) if lat is not None else None,
        "lon": float(lon) if lon is not None else None,
        "status": record.get("status"),
    }


async def app_page(request: web.Request) -> web.Response:
    """The responder app (a phone page); like the console it holds no data until a token is given."""
    return web.Response(body=request.app[CONSOLE].app_page, content_type="text/html", charset="utf-8")


async def app_worker(request: web.Request) -> web.FileResponse:
    """The app's service worker, served under /app/ so its scope is the app."""
    return web.FileResponse(STATIC_DIR / "app-sw.js", headers={"Content-Type": "text/javascript"})


async def release_hold(request: web.Request) -> web.Response:
    """POST: release a payment hold by hand (dispatchers and admins); audited with the release, 409 unless held."""
    console, who = request.app[CONSOLE], _who(request)
    _require(who, DISPATCHER, ADMIN)
    record = await console.holds.end(request.match_info["hold_id"], RELEASE, who.actor)
    return _json(record.as_dict())


async def heartbeat(request: web.Request) -> web.Response:
    """POST {lat, lon, status?}: a responder's position report (its own id) or an admin's correction."""
    console, who = request.app[CONSOLE], _who(request)
    rid = request.match_info["responder_id"]
    if not (who.role == ADMIN or (who.role == RESPONDER and who.responder_id == rid)):
        raise PermissionDenied("only the responder itself (or an admin) reports its position")
    body = await _body(request)
    status = body.get("status")
    if status is not None and not isinstance(status, str):
        raise BadRequest("status must be a string")
    registry = console.lifecycle.registry
    before = await registry.get(rid)
    if before is None:
        raise UnknownResponder(rid)
    lat, lon = body.get("lat"), body.get("lon")
    if not isinstance(lat, int | float) or not isinstance(lon, int | float) or isinstance(lat, bool):
        raise BadRequest("lat and lon must be numbers")
    after = await registry.heartbeat(rid, float(lat), float(lon), status)
    if after != before["status"]:
        # Position reports are telemetry; a change of duty status is a decision and goes to the audit log.
        await record_audit(
            console.redis, who.actor, "responder_status", at_ms=console.clock.now_ms(), responder_id=rid, status=after
        )
    fresh = await registry.get(rid) or {}
    await publish_change(
        console.redis,
        {
            "type": "responder",
            "responder_id": rid,
            "lat": fresh.get("lat"),
            "lon": fresh.get("lon"),
            "status": after,
            "at_ms": console.clock.now_ms(),
        },
    )
    return _json({"responder_id": rid, "status": after})


async def ticket(request: web.Request) -> web.Response:
    """A short-lived signed ticket for the SSE URL."""
    console, who = request.app[CONSOLE], _who(request)
    value, expires = console.tickets.issue(who)
    return _json({"ticket": value, "expires_ms": expires, "url": f"/api/events?ticket={value}"})


def _visible(who: Principal, raw: bytes) -> bool:
    """Dispatchers and admins see every change; a responder only those about itself."""
    if who.role != RESPONDER:
        return True
    try:
        change = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return False
    return who.responder_id in (change.get("responder_id"), change.get("previous_responder_id"))


async def events(request: web.Request) -> web.StreamResponse:
    """Server-sent events: one ``data:`` line per change notice, comments as keep-alives."""
    console = request.app[CONSOLE]
    who = console.tickets.verify(request.query.get("ticket", ""))
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-store",
            "X-Accel-Buffering": "no",  # a reverse proxy must not hold the stream back
            "X-Content-Type-Options": "nosniff",
        }
    )
    queue = console.hub.subscribe()
    try:
        await response.prepare(request)
        await response.write(b"retry: 3000\n: connected\n\n")
        while True:
            try:
                raw = await asyncio.wait_for(queue.get(), SSE_KEEPALIVE_S)
            except TimeoutError:
                await response.write(b": keepalive\n\n")
                continue
            if raw is None:
                break  # the console is shutting down
            if _visible(who, raw):
                await response.write(b"data: " + raw + b"\n\n")
    except (ConnectionResetError, asyncio.CancelledError):
        pass  # the browser went away
    finally:
        console.hub.unsubscribe(queue)
    return response


# --- app ----------------------------------------------------------------------------------------------------


def create_app(settings: Settings, redis: Redis, *, clock: Clock = SYSTEM_CLOCK) -> web.Application:
    """The console application over an existing Redis client (the caller owns and closes the client)."""
    key = settings.console_ticket_key.get_secret_value().encode() if settings.console_ticket_key else os.urandom(32)
    lifecycle = TaskLifecycle(redis, settings, clock=clock)
    console = Console(
        settings=settings,
        redis=redis,
        lifecycle=lifecycle,
        tasks=TaskStore(redis),
        holds=HoldStore(redis, settings, clock=clock),
        tokens=TokenStore.from_file(settings.console_tokens_file),
        tickets=TicketSigner(key, settings.console_ticket_ttl_s, clock=clock),
        limiter=RateLimiter(settings.console_responder_rate_per_s, settings.console_responder_burst, clock),
        hub=ChangeHub(redis),
        page=(STATIC_DIR / "index.html").read_bytes(),
        app_page=(STATIC_DIR / "app.html").read_bytes(),
        clock=clock,
    )
    if not len(console.tokens):
        log.warning("console: no tokens configured (FW_CONSOLE_TOKENS_FILE); every API call will be refused")
    app = web.Application(
        middlewares=[security_headers, errors, authenticate], client_max_size=settings.console_max_body_bytes
    )
    app[CONSOLE] = console
    app.router.add_get("/", page)
    app.router.add_get("/levels.json", level_table)
    app.router.add_get("/levels.css", level_styles)
    app.router.add_static("/static/", STATIC_DIR, show_index=False, follow_symlinks=False)
    app.router.add_get("/app/", app_page)
    app.router.add_get("/app/sw.js", app_worker)
    app.router.add_get("/api/me", me)
    app.router.add_get("/api/my/task", my_task)
    app.router.add_get("/api/cases", list_cases)
    app.router.add_get("/api/cases/{case_key}/timeline", timeline)
    app.router.add_get("/api/closed", search_closed)
    app.router.add_get("/api/responders", list_responders)
    app.router.add_get("/api/tasks/{task_id}", get_task)
    app.router.add_post("/api/tasks/{task_id}/assign", assign)
    app.router.add_post("/api/tasks/{task_id}/transition", transition)
    app.router.add_post("/api/holds/{hold_id}/release", release_hold)
    app.router.add_post("/api/responders/{responder_id}/heartbeat", heartbeat)
    app.router.add_post("/api/events/ticket", ticket)
    app.router.add_get("/api/events", events)

    async def start_hub(app: web.Application) -> None:
        await console.hub.start()

    async def close_hub(app: web.Application) -> None:
        await console.hub.close()  # ends open SSE streams before aiohttp waits for handlers

    app.on_startup.append(start_hub)
    app.on_shutdown.append(close_hub)
    return app
