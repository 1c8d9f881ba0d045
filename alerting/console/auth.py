"""Console authentication: bearer tokens from a file, signed short-lived SSE tickets, per-token rate limits."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import os
import secrets
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from alerting.audit import Actor
from core.clock import SYSTEM_CLOCK, Clock
from core.errors import AuthenticationRequired, InvalidTokensFile, RateLimited

DISPATCHER, RESPONDER, ADMIN = "dispatcher", "responder", "admin"
ROLES = (DISPATCHER, RESPONDER, ADMIN)
MIN_TOKEN_CHARS = 24  # a token is a password nobody types twice; short ones are a configuration mistake
TOKENS_FILE_NAME = "console-tokens.json"
TOKENS_RECHECK_S = 1.0  # how often a request may look whether the tokens file changed

log = logging.getLogger(__name__)


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller; ``token_id`` is a short hash of the token (for rate limits), never the token."""

    name: str
    role: str
    responder_id: str | None
    token_id: str

    @property
    def actor(self) -> Actor:
        """The caller as named in task history and audit."""
        return Actor(self.name, self.role)

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready view (no secrets)."""
        return {"name": self.name, "role": self.role, "responder_id": self.responder_id}


def _principal(token: str, entry: Any) -> Principal:
    if not isinstance(entry, dict):
        raise InvalidTokensFile("each token maps to an object with role and name")
    role, name, rid = entry.get("role"), entry.get("name"), entry.get("responder_id")
    if role not in ROLES:
        raise InvalidTokensFile(f"unknown role {role!r}; one of {', '.join(ROLES)}")
    if not isinstance(name, str) or not name:
        raise InvalidTokensFile("every token needs a non-empty name")
    if role == RESPONDER and (not isinstance(rid, str) or not rid):
        raise InvalidTokensFile(f"responder token of {name!r} needs a responder_id")
    if len(token) < MIN_TOKEN_CHARS:
        raise InvalidTokensFile(f"token of {name!r} is shorter than {MIN_TOKEN_CHARS} characters")
    return Principal(name, role, rid if isinstance(rid, str) and rid else None, _digest(token).hex()[:16])


class TokenStore:
    """Known tokens, kept only as SHA-256 digests; lookups compare against every one in constant time.

    Loaded from a file, it re-reads the file when it changes (looked at most once a second), so a token is
    added or revoked without a restart; a file that became unreadable keeps the tokens last read, and says so.
    """

    def __init__(self, tokens: Mapping[str, Mapping[str, Any]], path: Path | None = None) -> None:
        self._entries = [(_digest(tok), _principal(tok, dict(entry))) for tok, entry in tokens.items()]
        self._path = path
        self._stamp = _stamp(path) if path is not None else None
        self._looked = time.monotonic()

    @classmethod
    def from_file(cls, path: Path | None) -> TokenStore:
        """Load ``{token: {role, name, responder_id?}}``; no file configured means no token is valid."""
        if path is None:
            return cls({})
        return cls(_read_tokens(Path(path)), Path(path))

    def refresh(self) -> bool:
        """Re-read the file if it changed since the last look; True when the tokens were replaced."""
        if self._path is None or time.monotonic() - self._looked < TOKENS_RECHECK_S:
            return False
        self._looked = time.monotonic()
        stamp = _stamp(self._path)
        if stamp == self._stamp:
            return False
        try:
            fresh = TokenStore(_read_tokens(self._path))
        except InvalidTokensFile as exc:
            log.error("console tokens file changed but cannot be used, keeping the previous tokens: %s", exc)
            return False
        self._entries, self._stamp = fresh._entries, stamp
        log.info("console tokens reloaded: %d tokens", len(self._entries))
        return True

    def __len__(self) -> int:
        return len(self._entries)

    def authenticate(self, presented: str) -> Principal | None:
        """The principal of a presented token, or None."""
        try:
            wanted = _digest(presented)
        except UnicodeEncodeError:  # bytes that are not UTF-8 (aiohttp keeps them as surrogates): no token of ours
            return None
        found: Principal | None = None
        # Every entry is compared, with no early exit, so timing says nothing about which token (if any) matched.
        for digest, principal in self._entries:
            if hmac.compare_digest(wanted, digest):
                found = principal
        return found


def _read_tokens(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise InvalidTokensFile(f"cannot read console tokens file {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise InvalidTokensFile("the console tokens file must hold one JSON object")
    for entry in data.values():
        if not isinstance(entry, dict):
            raise InvalidTokensFile(f"console tokens file: the entry of a token is not an object ({type(entry)})")
    return data


def _stamp(path: Path) -> tuple[int, int, int] | None:
    """What changes when the file is replaced or rewritten (a Kubernetes Secret update swaps a symlink)."""
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class TicketSigner:
    """Short-lived HMAC-signed tickets standing in for the bearer token on the SSE URL (EventSource has no headers)."""

    def __init__(self, key: bytes, ttl_s: float, *, clock: Clock = SYSTEM_CLOCK) -> None:
        self._key = key
        self._ttl_ms = int(ttl_s * 1000)
        self._clock = clock

    def issue(self, principal: Principal) -> tuple[str, int]:
        """A ticket for ``principal`` and its expiry (wall ms)."""
        expires = self._clock.now_ms() + self._ttl_ms
        payload = json.dumps(
            {
                "n": principal.name,
                "r": principal.role,
                "rid": principal.responder_id,
                "t": principal.token_id,
                "exp": expires,
            },
            separators=(",", ":"),
        ).encode()
        sig = hmac.new(self._key, payload, hashlib.sha256).digest()
        return f"{_b64(payload)}.{_b64(sig)}", expires

    def verify(self, ticket: str) -> Principal:
        """The principal a valid, unexpired ticket was issued to, or AuthenticationRequired."""
        try:
            body, sig = ticket.split(".", 1)
            payload, given = _unb64(body), _unb64(sig)
        except ValueError as exc:
            raise AuthenticationRequired("malformed ticket") from exc
        if not hmac.compare_digest(hmac.new(self._key, payload, hashlib.sha256).digest(), given):
            raise AuthenticationRequired("bad ticket signature")
        data = json.loads(payload)
        if int(data["exp"]) < self._clock.now_ms():
            raise AuthenticationRequired("ticket expired")
        return Principal(data["n"], data["r"], data.get("rid"), data["t"])


@dataclass
class _Bucket:
    tokens: float
    at: float


@dataclass
class RateLimiter:
    """One token bucket per key, in memory (the keys are console tokens, so their number is bounded)."""

    rate_per_s: float
    burst: int
    clock: Clock = SYSTEM_CLOCK
    _buckets: dict[str, _Bucket] = field(default_factory=dict)

    def take(self, key: str) -> None:
        """Spend one token of ``key``'s bucket, or raise RateLimited with the wait until the next one."""
        t = self.clock.monotonic()
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = _Bucket(float(self.burst), t)
        bucket.tokens = min(float(self.burst), bucket.tokens + (t - bucket.at) * self.rate_per_s)
        bucket.at = t
        if bucket.tokens < 1.0:
            raise RateLimited((1.0 - bucket.tokens) / self.rate_per_s)
        bucket.tokens -= 1.0


@dataclass(frozen=True)
class DemoTokens:
    """Where :func:`write_demo_tokens` put the tokens, and the tokens themselves (to print or hand out)."""

    path: Path
    dispatcher: str
    admin: str
    responders: dict[str, str]


def write_demo_tokens(data_dir: Path, responder_ids: Iterable[str] = ()) -> DemoTokens:
    """Fresh random tokens in ``data_dir/console-tokens.json`` (mode 0600): dispatcher, admin, one per responder."""
    dispatcher, admin = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    responders = {rid: secrets.token_urlsafe(32) for rid in responder_ids}
    content: dict[str, dict[str, str]] = {
        dispatcher: {"role": DISPATCHER, "name": "demo-dispatcher"},
        admin: {"role": ADMIN, "name": "demo-admin"},
    }
    for rid, token in responders.items():
        content[token] = {"role": RESPONDER, "name": f"responder-{rid}", "responder_id": rid}
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / TOKENS_FILE_NAME
    tmp = path.with_suffix(".tmp")
    # Created 0600 from the start: the tokens never sit world-readable, not even for a moment.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(content, fh, indent=1)
    os.replace(tmp, path)
    return DemoTokens(path, dispatcher, admin, responders)
