"""Property tests of the console's HTTP API: random bodies, bytes, headers, path ids and tokens against the real
app (aiohttp on loopback, a real redis-server). The server never answers 5xx, never hangs, refuses callers
without a valid bearer token with 401 and callers of the wrong role with 403.

The console runs in its own thread and event loop for the whole module, so the hypothesis examples are plain
blocking HTTP calls with a per-request timeout. Responder rate limits are set out of reach here: they are
tested in test_console_api.py and would otherwise turn some expected 403s into 429s.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
import redis.asyncio as aioredis
from hypothesis import HealthCheck, given, reject
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from alerting.console import write_demo_tokens
from alerting.console.server import RESPONDER_STATES
from alerting.decision import Decision
from alerting.dispatcher import Dispatcher
from alerting.lifecycle import OUTCOMES, STATES
from alerting.service import DispatchService, start_console
from core.settings import Settings
from sandbox.services import start_redis

pytestmark = pytest.mark.integration

TIMEOUT_S = 5.0  # one request; a hung handler fails the example instead of the whole run
HOME = (31.2304, 121.4737)
TASK = "@task"  # stands for the id of the one real task, known only once the console runs
FUZZ = hypothesis_settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture],
)

# --- the served console -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Served:
    url: str
    tokens: dict[str, str]  # role or responder id -> token
    task_id: str
    max_body: int


def _responder(rid: str, km_north: float) -> dict[str, Any]:
    lat = HOME[0] + km_north / 111.2
    return {"responder_id": rid, "kind": "police", "unit": "U1", "lat": lat, "lon": HOME[1], "status": "available"}


async def _cancel_the_rest() -> None:
    """End what the server left behind (a connection still lingering over a refused body) before the loop closes."""
    rest = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    for task in rest:
        task.cancel()
    await asyncio.gather(*rest, return_exceptions=True)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    redis_service = start_redis()
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="console-loop", daemon=True)
    thread.start()
    made = write_demo_tokens(Path(tmp_path_factory.mktemp("fuzz")), ["p1", "p2"])
    settings = Settings(
        console_tokens_file=made.path,
        console_responder_burst=1_000_000,
        console_responder_rate_per_s=1_000_000.0,
        responder_search_radii_km=(2.0, 5.0),
    )

    async def up() -> tuple[DispatchService, str]:
        console = await start_console(settings, redis_service.url, watch_acks=False)
        r = aioredis.Redis.from_url(redis_service.url)
        try:
            dispatcher = Dispatcher(r, settings)
            await dispatcher.registry.load([_responder("p1", 0.3), _responder("p2", 0.9)])
            task = await dispatcher.handle(
                Decision("+8613800004001", "e-fuzz", 1_700_000_000_000, 0.95, 3, "m-1", ("fuzz",), *HOME)
            )
        finally:
            await r.aclose()
        assert task is not None
        return console, str(task["task_id"])

    try:
        console, task_id = asyncio.run_coroutine_threadsafe(up(), loop).result(60)
        try:
            yield Served(
                console.url,
                {
                    "dispatcher": made.dispatcher,
                    "admin": made.admin,
                    "p1": made.responders["p1"],
                    "p2": made.responders["p2"],
                },
                task_id,
                settings.console_max_body_bytes,
            )
        finally:
            asyncio.run_coroutine_threadsafe(console.stop(), loop).result(30)
            asyncio.run_coroutine_threadsafe(_cancel_the_rest(), loop).result(30)
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()
        redis_service.stop()


@pytest.fixture(scope="module")
def client(served: Served) -> Iterator[httpx.Client]:
    # A fresh connection per request: after a refused body the server may close a kept-alive connection, and
    # a reused one that was just closed would fail the next example for the previous one's sake.
    with httpx.Client(base_url=served.url, timeout=TIMEOUT_S, limits=httpx.Limits(max_keepalive_connections=0)) as c:
        yield c


def post(client: httpx.Client, path: str, headers: dict[str, Any], body: bytes) -> httpx.Response:
    """One POST; a missing answer fails the example (the server must never hang)."""
    try:
        return client.post(path, headers=headers, content=body)
    except httpx.TimeoutException:
        pytest.fail(f"no answer within {TIMEOUT_S} s: POST {path[:200]!r}")
    except httpx.InvalidURL:
        reject()  # the client cannot even send this path; nothing reached the server


# --- strategies ---------------------------------------------------------------------------------------------

TEXT = st.characters(blacklist_categories=("Cs",))  # lone surrogates cannot be UTF-8 encoded into a URL or body
HEADER_TEXT = st.characters(blacklist_categories=("Cs", "Cc"))  # control characters: the HTTP parser answers 400
TRAVERSAL = (
    ".",
    "..",
    "../../etc/passwd",
    "..\\..\\windows\\win.ini",
    "%2e%2e%2f%2e%2e%2f",
    "..%2F..%2Fapi%2Fme",
    "/",
    "a/b/c",
    "%00",
    "\x00",
    " ",
    "%",
    "?x=1#y",
    "p1",
    "p2",
    "nope",
    "🙂" * 3,
    "Ω≈ç√∫",
    "\u202e\u0645\u0631\u062d\u0628\u0627",
    TASK,
)
short_ids = st.one_of(
    st.sampled_from(TRAVERSAL),
    st.text(TEXT, min_size=1, max_size=40),
    st.text(st.characters(min_codepoint=0x80, blacklist_categories=("Cs",)), min_size=1, max_size=300),
)
# Long enough to pass aiohttp's request-line limit (8190 bytes), which it answers with 400 itself.
long_ids = st.one_of(
    st.integers(1000, 12_000).map(lambda n: "x" * n),
    st.text(st.characters(min_codepoint=0x80, blacklist_categories=("Cs",)), min_size=500, max_size=3000),
)

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()  # unbounded: also beyond 64 bits
    | st.floats()  # NaN and infinities become JSON the server must refuse
    | st.text(TEXT, max_size=30),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(TEXT, max_size=12), inner, max_size=5),
    max_leaves=15,
)
field_values = st.one_of(
    st.sampled_from(
        (*STATES, *OUTCOMES, "p1", "p2", "ghost", "available", "off_duty", "busy", 31.23, 121.47, 95.0, -181.0)
    ),
    json_values,
)
shaped = st.fixed_dictionaries(
    {},
    optional={k: field_values for k in ("state", "outcome", "responder_id", "lat", "lon", "status")},
)


def _dumps(value: Any, ascii_only: bool) -> bytes:
    return json.dumps(value, ensure_ascii=ascii_only).encode()


bodies = st.one_of(
    st.builds(_dumps, shaped, st.booleans()),
    st.builds(_dumps, json_values, st.booleans()),
    st.binary(max_size=2000),
    st.just(b""),
    st.sampled_from((b"{", b"[1,", b"null", b'{"state": "\\ud800"}', b'{"lat": 1e999, "lon": 1}', b"\xef\xbb\xbf{}")),
)

# Header fields: token-character names; values of visible ASCII, spaces and obs-text (bytes >= 0x80).
NAME_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!#$%&'*+-.^_`|~"
VALUE_BYTES = [b for b in range(0x20, 0x100) if b != 0x7F]
# Framing and connection headers would only test the client; Authorization is drawn on its own.
NOT_FUZZED = {"host", "content-length", "transfer-encoding", "connection", "authorization", "expect", "upgrade", "te"}
header_values = st.lists(st.sampled_from(VALUE_BYTES), max_size=80).map(lambda bs: bytes(bs).strip())
header_names = st.one_of(
    st.sampled_from(("Content-Type", "Accept", "Origin", "Cookie", "X-Forwarded-For", "User-Agent", "Range")),
    st.text(NAME_CHARS, min_size=1, max_size=24),
).filter(lambda name: name.lower() not in NOT_FUZZED and not name.lower().startswith("content-encoding"))
plain_headers = st.dictionaries(header_names, header_values, max_size=6)
any_headers = st.builds(
    lambda headers, encoding: {**headers, **({"Content-Encoding": encoding} if encoding is not None else {})},
    plain_headers,
    st.none() | st.sampled_from((b"gzip", b"deflate", b"identity", b"br", b"zstd", b"gzip, gzip", b"x-unknown")),
)

ROUTES = {
    "transition": "/api/tasks/{}/transition",
    "assign": "/api/tasks/{}/assign",
    "heartbeat": "/api/responders/{}/heartbeat",
    "ticket": "/api/events/ticket",
}

bad_authorizations = st.one_of(
    st.just(None),
    # (A client cannot send trailing whitespace, so "Bearer " with nothing after it is not among them.)
    st.sampled_from((b"", b"Bearer", b"bearer", b"Basic dXNlcjpwYXNz", b"Token x" * 4, b"Bearer \xff\xfe\xfd")),
    st.builds(lambda t: (b"Bearer " + t).strip(), header_values),
    st.builds(lambda t: (b"Bearer " + t.encode()).strip(), st.text(HEADER_TEXT, min_size=24, max_size=60)),
    header_values,
)


def url_for(route: str, raw_id: str, served: Served, *, strict: bool = True) -> str:
    """The route with the id in its one path segment; ``strict`` also escapes dots so a client or server
    cannot fold ``..`` away, otherwise slashes, dots and percent signs go through as they are."""
    value = served.task_id if raw_id == TASK else raw_id
    segment = quote(value, safe="").replace(".", "%2E") if strict else quote(value, safe="/.%~")
    return ROUTES[route].format(segment)


def _auth(served: Served, who: str | None) -> dict[str, Any]:
    return {} if who is None else {"Authorization": f"Bearer {served.tokens[who]}"}


# --- properties ---------------------------------------------------------------------------------------------


@FUZZ
@given(
    route=st.sampled_from(sorted(ROUTES)),
    raw_id=st.one_of(short_ids, long_ids),
    strict=st.booleans(),
    body=st.one_of(bodies, bodies.map(gzip.compress), st.just(b"x" * 20_000)),
    headers=any_headers,
    who=st.sampled_from((None, "dispatcher", "admin", "p1", "p2")),
    authorization=bad_authorizations,
)
def test_never_5xx_never_hangs(
    served: Served,
    client: httpx.Client,
    route: str,
    raw_id: str,
    strict: bool,
    body: bytes,
    headers: dict[str, Any],
    who: str | None,
    authorization: bytes | None,
) -> None:
    sent = {**headers, **_auth(served, who)}
    if who is None and authorization is not None:
        sent["Authorization"] = authorization
    response = post(client, url_for(route, raw_id, served, strict=strict), sent, body)
    assert response.status_code < 500, response.text[:300]


@FUZZ
@given(
    route=st.sampled_from(sorted(ROUTES)),
    raw_id=short_ids,
    body=bodies,
    headers=plain_headers,
    authorization=st.one_of(
        bad_authorizations,
        # A real token, but not as a bearer token, or not quite the token.
        st.sampled_from(("dispatcher", "admin", "p1")).map(lambda w: ("raw", w)),
        st.sampled_from(("dispatcher", "admin", "p1")).map(lambda w: ("basic", w)),
        st.sampled_from(("dispatcher", "admin", "p1")).map(lambda w: ("truncated", w)),
    ),
)
def test_without_a_valid_token_401(
    served: Served,
    client: httpx.Client,
    route: str,
    raw_id: str,
    body: bytes,
    headers: dict[str, Any],
    authorization: Any,
) -> None:
    sent = dict(headers)
    if isinstance(authorization, tuple):
        how, who = authorization
        token = served.tokens[who]
        sent["Authorization"] = {"raw": token, "basic": f"Basic {token}", "truncated": f"Bearer {token[:-1]}"}[how]
    elif authorization is not None:
        sent["Authorization"] = authorization
    response = post(client, url_for(route, raw_id, served), sent, body)
    assert response.status_code == 401, (response.status_code, response.text[:300])
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.json()["error"]


# What each wrong caller gets refused for; the body is read only after the role check, except for
# ``transition``, where the responder's allowed states are checked on the parsed body.
wrong_role_cases = st.one_of(
    st.tuples(st.just("assign"), st.sampled_from(("p1", "p2")), short_ids, bodies),
    st.tuples(st.just("heartbeat"), st.just("dispatcher"), short_ids, bodies),
    st.tuples(
        st.just("heartbeat"), st.sampled_from(("p1", "p2")), short_ids.filter(lambda i: i not in ("p1", "p2")), bodies
    ),
    st.tuples(
        st.just("transition"),
        st.sampled_from(("p1", "p2")),
        short_ids,
        st.builds(
            lambda state, extra: json.dumps({**extra, "state": state}).encode(),
            st.text(TEXT, max_size=30).filter(lambda s: s not in RESPONDER_STATES),
            st.fixed_dictionaries({}, optional={"outcome": st.sampled_from(OUTCOMES)}),
        ),
    ),
)


@FUZZ
@given(case=wrong_role_cases, headers=plain_headers)
def test_wrong_role_403(
    served: Served, client: httpx.Client, case: tuple[str, str, str, bytes], headers: dict[str, Any]
) -> None:
    route, who, raw_id, body = case
    response = post(client, url_for(route, raw_id, served), {**headers, **_auth(served, who)}, body)
    if "{" in raw_id or "}" in raw_id:
        # aiohttp's path parameters never match braces: no such route (after the token was accepted).
        assert response.status_code == 404, (response.status_code, response.text[:300])
        return
    assert response.status_code == 403, (route, who, response.status_code, response.text[:300])
    assert response.json()["error"]


def test_examples_that_once_failed(served: Served, client: httpx.Client) -> None:
    """Fixed examples the properties found (each was a 500 or a hang once), and the declared size limit."""
    desk = _auth(served, "dispatcher")
    path = url_for("assign", TASK, served)
    assert post(client, path, desk, b"x" * (served.max_body + 1)).status_code == 413
    for encoding in ("gzip", "deflate", "br"):  # undecodable, or compressed at all: refused unread
        refused = post(client, path, {**desk, "Content-Encoding": encoding}, b"not compressed")
        assert refused.status_code in (400, 415), (encoding, refused.text)
    assert post(client, path, {**desk, "Content-Encoding": "gzip"}, gzip.compress(b"{}")).status_code == 415
    for raw in (b"Bearer \xff\xfe" + b"a" * 30, b"Bearer \xc3\x28", b"\xff"):  # not UTF-8
        assert post(client, path, {"Authorization": raw}, b"{}").status_code == 401


def test_broken_deflate_body_after_its_headers_is_answered(served: Served) -> None:
    """Headers first, then a body that cannot be inflated: the handler used to wait for it forever."""
    host, port = served.url.removeprefix("http://").rsplit(":", 1)
    head = (
        f"POST {url_for('assign', TASK, served)} HTTP/1.1\r\nHost: {host}\r\n"
        f"Authorization: Bearer {served.tokens['dispatcher']}\r\n"
        "Content-Encoding: deflate\r\nContent-Length: 3\r\nConnection: close\r\n\r\n"
    ).encode()
    with socket.create_connection((host, int(port)), timeout=TIMEOUT_S) as sock:
        sock.sendall(head)
        time.sleep(0.2)  # a separate segment: the request is already with its handler
        sock.sendall(b"[1,")
        try:
            status_line = sock.recv(200).split(b"\r\n", 1)[0]
        except TimeoutError:
            pytest.fail(f"no answer within {TIMEOUT_S} s")
    assert status_line.split()[1] in (b"400", b"415"), status_line
