"""The responder registry: police officers and grid workers, where they are and whether they are free."""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import Any

from redis.asyncio import Redis

from alerting import keys
from core.clock import SYSTEM_CLOCK, Clock
from core.errors import InvalidResponder, NoResponderAvailable, UnknownResponder

KINDS = ("police", "grid_worker")
STATUSES = ("available", "busy", "off_duty")
# Redis GEO refuses latitudes beyond the Web-Mercator limit.
_GEO_MAX_LAT = 85.05112878

# Compare-and-set of a responder's status: the check and the write happen inside Redis, so two
# concurrent claims can never both see "available" and take the same responder.
_CAS_STATUS = """
if redis.call('HGET', KEYS[1], 'status') == ARGV[1] then
  redis.call('HSET', KEYS[1], 'status', ARGV[2], 'status_ms', ARGV[3])
  return 1
end
return 0
"""

# Unconditional status change, but only for a responder that exists (HSET would create a stub).
_SET_STATUS = """
if redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('HSET', KEYS[1], 'status', ARGV[1], 'status_ms', ARGV[2])
  return 1
end
return 0
"""

# Moving a responder touches its hash and its kind's geo set; one script keeps them consistent.
# KEYS: hash, police geo, grid_worker geo. ARGV: lat, lon, id.
_MOVE = """
local kind = redis.call('HGET', KEYS[1], 'kind')
if not kind then return 0 end
redis.call('HSET', KEYS[1], 'lat', ARGV[1], 'lon', ARGV[2])
local geo = KEYS[3]
if kind == 'police' then geo = KEYS[2] end
redis.call('GEOADD', geo, ARGV[2], ARGV[1], ARGV[3])
return 1
"""


# A position report from the field: move the responder, stamp it seen, and apply the app's duty status.
# ``busy`` belongs to the task lifecycle, so the app may only toggle available <-> off_duty.
# KEYS: hash, police geo, grid_worker geo. ARGV: lat, lon, id, seen_ms, wanted status ('' = keep).
_HEARTBEAT = """
local kind = redis.call('HGET', KEYS[1], 'kind')
if not kind then return false end
redis.call('HSET', KEYS[1], 'lat', ARGV[1], 'lon', ARGV[2], 'seen_ms', ARGV[4])
local geo = KEYS[3]
if kind == 'police' then geo = KEYS[2] end
redis.call('GEOADD', geo, ARGV[2], ARGV[1], ARGV[3])
local current = redis.call('HGET', KEYS[1], 'status')
local wanted = ARGV[5]
if (wanted == 'off_duty' and current == 'available') or (wanted == 'available' and current == 'off_duty') then
  redis.call('HSET', KEYS[1], 'status', wanted, 'status_ms', ARGV[4])
  current = wanted
end
return current
"""


def _check_coords(lat: Any, lon: Any) -> tuple[float, float]:
    try:
        flat, flon = float(lat), float(lon)
    except (TypeError, ValueError) as exc:
        raise InvalidResponder(f"lat/lon must be numbers, got {lat!r}/{lon!r}") from exc
    if not (math.isfinite(flat) and math.isfinite(flon)):
        raise InvalidResponder("lat/lon must be finite")
    if not (-_GEO_MAX_LAT <= flat <= _GEO_MAX_LAT and -180.0 <= flon <= 180.0):
        raise InvalidResponder(f"lat/lon out of range for Redis GEO: {flat}, {flon}")
    return flat, flon


def _validate(record: Mapping[str, Any], now_ms: int) -> dict[Any, str]:
    """The Redis hash fields of one responder.v1 record loaded at ``now_ms``, or InvalidResponder."""
    missing = [f for f in ("responder_id", "kind", "unit", "lat", "lon", "status") if f not in record]
    if missing:
        raise InvalidResponder(f"responder record lacks {', '.join(missing)}")
    rid, kind, unit, status = record["responder_id"], record["kind"], record["unit"], record["status"]
    if not isinstance(rid, str) or not rid:
        raise InvalidResponder("responder_id must be a non-empty string")
    if kind not in KINDS:
        raise InvalidResponder(f"{rid}: kind must be one of {KINDS}, got {kind!r}")
    if status not in STATUSES:
        raise InvalidResponder(f"{rid}: status must be one of {STATUSES}, got {status!r}")
    if not isinstance(unit, str):
        raise InvalidResponder(f"{rid}: unit must be a string")
    lat, lon = _check_coords(record["lat"], record["lon"])
    return {
        "responder_id": rid,
        "kind": kind,
        "unit": unit,
        "lat": repr(lat),
        "lon": repr(lon),
        "status": status,
        "status_ms": str(now_ms),
        # Loading counts as being seen: a roster responder is fresh until responder_stale_s after the load.
        "seen_ms": str(now_ms),
    }


def _decode(raw: Mapping[Any, Any]) -> dict[str, Any]:
    fields = {keys.text(k): keys.text(v) for k, v in raw.items()}
    out: dict[str, Any] = {
        "responder_id": fields.get("responder_id"),
        "kind": fields.get("kind"),
        "unit": fields.get("unit"),
        "lat": float(fields.get("lat") or "nan"),
        "lon": float(fields.get("lon") or "nan"),
        "status": fields.get("status"),
    }
    if fields.get("seen_ms"):
        out["seen_ms"] = int(fields["seen_ms"] or 0)
    return out


def _is_stale(seen_ms: str | None, now_ms: int, stale_s: float | None) -> bool:
    """Whether a responder last seen at ``seen_ms`` is too quiet to be sent anywhere."""
    if stale_s is None or not seen_ms:
        return False  # no staleness policy, or a record written before heartbeats existed
    return now_ms - int(seen_ms) > stale_s * 1000


class ResponderRegistry:
    """Responders in Redis: one hash each plus a geo set per kind for nearest-first search."""

    def __init__(self, redis: Redis, stale_s: float | None = None, *, clock: Clock = SYSTEM_CLOCK) -> None:
        self._redis = redis
        self.clock = clock
        # None = never stale (the old behaviour); the dispatcher passes settings.responder_stale_s.
        self.stale_s = stale_s
        self._cas = redis.register_script(_CAS_STATUS)
        self._set_status = redis.register_script(_SET_STATUS)
        self._move = redis.register_script(_MOVE)
        self._heartbeat = redis.register_script(_HEARTBEAT)

    async def load(self, records: Iterable[Mapping[str, Any]]) -> int:
        """Register or overwrite responder.v1 records (status included); returns how many were loaded."""
        now = self.clock.now_ms()
        validated = [_validate(r, now) for r in records]  # validate all first: a bad roster loads nothing
        pipe = self._redis.pipeline(transaction=False)
        for fields in validated:
            rid, kind = fields["responder_id"], fields["kind"]
            pipe.hset(keys.responder(rid), mapping=fields)
            pipe.geoadd(keys.responders_geo(kind), (float(fields["lon"]), float(fields["lat"]), rid))
            for other in KINDS:  # a responder whose kind changed must leave the other geo set
                if other != kind:
                    pipe.zrem(keys.responders_geo(other), rid)
            pipe.sadd(keys.RESPONDER_IDS, rid)
        if validated:
            await pipe.execute()
        return len(validated)

    async def get(self, responder_id: str) -> dict[str, Any] | None:
        """One responder as a responder.v1 dict, or None."""
        raw = await self._redis.hgetall(keys.responder(responder_id))
        return _decode(raw) if raw else None

    async def set_status(self, responder_id: str, status: str) -> None:
        """Set a responder's status unconditionally (e.g. from the police app: off duty, back on)."""
        if status not in STATUSES:
            raise InvalidResponder(f"status must be one of {STATUSES}, got {status!r}")
        done = await self._set_status(keys=[keys.responder(responder_id)], args=[status, self._now()])
        if not done:
            raise UnknownResponder(responder_id)

    async def update_location(self, responder_id: str, lat: float, lon: float) -> None:
        """Move a responder (a position report from the field)."""
        flat, flon = _check_coords(lat, lon)
        done = await self._move(
            keys=[keys.responder(responder_id), keys.responders_geo("police"), keys.responders_geo("grid_worker")],
            args=[repr(flat), repr(flon), responder_id],
        )
        if not done:
            raise UnknownResponder(responder_id)

    async def heartbeat(self, responder_id: str, lat: float, lon: float, status: str | None = None) -> str:
        """Record a position report (moves and marks the responder seen); returns the status after it.

        ``status`` may toggle available <-> off_duty; ``busy`` is set and cleared only by task assignment.
        """
        flat, flon = _check_coords(lat, lon)
        if status is not None and status not in STATUSES:
            raise InvalidResponder(f"status must be one of {STATUSES}, got {status!r}")
        seen = self._now()
        after = await self._heartbeat(
            keys=[keys.responder(responder_id), keys.responders_geo("police"), keys.responders_geo("grid_worker")],
            args=[repr(flat), repr(flon), responder_id, seen, status or ""],
        )
        if after is None:
            raise UnknownResponder(responder_id)
        return keys.text(after) or ""

    def is_stale(self, responder: Mapping[str, Any], now_ms: int | None = None) -> bool:
        """Whether a responder dict (from :meth:`get`) is too quiet to be assigned."""
        seen = responder.get("seen_ms")
        now = now_ms if now_ms is not None else self.clock.now_ms()
        return _is_stale(str(seen) if seen else None, now, self.stale_s)

    async def claim(self, responder_id: str) -> dict[str, Any]:
        """Claim one named responder (available -> busy) or raise NoResponderAvailable."""
        if not await self._try_claim(responder_id):
            if not await self._redis.exists(keys.responder(responder_id)):
                raise UnknownResponder(responder_id)
            raise NoResponderAvailable(responder_id)
        found = await self.get(responder_id)
        assert found is not None  # it was just claimed
        return found

    async def release(self, responder_id: str) -> bool:
        """Make a busy responder available again; False if it was not busy (e.g. went off duty meanwhile)."""
        # Only busy -> available: releasing must not put an off-duty responder back on the street.
        return bool(await self._cas(keys=[keys.responder(responder_id)], args=["busy", "available", self._now()]))

    async def claim_nearest(
        self,
        lat: float,
        lon: float,
        unit_hint: str | None,
        radii_km: Sequence[float],
        *,
        exclude: Collection[str] = (),
        now_ms: int | None = None,
    ) -> dict[str, Any] | None:
        """Claim the nearest available, non-stale responder within the first radius that has one; None if none.

        Within one radius ring a responder of ``unit_hint`` is preferred over a nearer one of another unit.
        ``exclude`` names responders never to pick (e.g. those a task was already given to).
        """
        flat, flon = _check_coords(lat, lon)
        now = now_ms if now_ms is not None else self.clock.now_ms()
        tried: set[str] = set(exclude)
        for radius in sorted(radii_km):
            candidates = await self._candidates(flat, flon, radius, tried, now)
            # Stable sort: unit match first, then distance (candidates arrive nearest first).
            candidates.sort(key=lambda c: (unit_hint is None or c[2] != unit_hint, c[1]))
            for rid, dist, _unit in candidates:
                tried.add(rid)
                if await self._try_claim(rid):
                    found = await self.get(rid)
                    if found is not None:
                        found["distance_km"] = round(dist, 3)
                        return found
        return None

    async def home_unit(self, lat: float, lon: float, within_km: float = 25.0) -> str | None:
        """The grid a location belongs to: the unit of the nearest grid worker on the roster, whatever
        their status (the grid is about where the victim lives, not who is free)."""
        flat, flon = _check_coords(lat, lon)
        hits: list[Any] = await self._redis.geosearch(
            keys.responders_geo("grid_worker"),
            longitude=flon,
            latitude=flat,
            radius=within_km,
            unit="km",
            sort="ASC",
            count=1,
        )
        if not hits:
            return None
        rid = keys.text(hits[0])
        return keys.text(await self._redis.hget(keys.responder(rid), "unit")) if rid else None

    async def _candidates(
        self, lat: float, lon: float, radius_km: float, tried: set[str], now_ms: int
    ) -> list[tuple[str, float, str | None]]:
        """Responders of every kind within the radius that look available and fresh now: (id, km, unit)."""
        found: list[tuple[str, float]] = []
        for kind in KINDS:
            hits: list[Any] = await self._redis.geosearch(
                keys.responders_geo(kind),
                longitude=lon,
                latitude=lat,
                radius=radius_km,
                unit="km",
                sort="ASC",
                withdist=True,
            )
            for member, dist in hits:
                rid = keys.text(member)
                if rid is not None and rid not in tried:
                    found.append((rid, float(dist)))
        if not found:
            return []
        found.sort(key=lambda c: c[1])
        # Pre-filter by status in one round trip; the Lua claim re-checks, so this is only a shortcut.
        pipe = self._redis.pipeline(transaction=False)
        for rid, _ in found:
            pipe.hmget(keys.responder(rid), ["status", "unit", "seen_ms"])
        rows = await pipe.execute()
        # Staleness is checked here only: one that goes quiet between this read and the claim is a
        # race of milliseconds against a policy of minutes.
        return [
            (rid, dist, keys.text(row[1]))
            for (rid, dist), row in zip(found, rows, strict=True)
            if keys.text(row[0]) == "available" and not _is_stale(keys.text(row[2]), now_ms, self.stale_s)
        ]

    def _now(self) -> str:
        """Now in ms, as the Lua scripts take it."""
        return str(self.clock.now_ms())

    async def _try_claim(self, responder_id: str) -> bool:
        return bool(await self._cas(keys=[keys.responder(responder_id)], args=["available", "busy", self._now()]))


EARTH_RADIUS_KM = 6371.0088


def haversine_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance in km (what a responder's app shows; Redis GEO answers the nearest-search)."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(a)))
