"""A seeded, deterministic simulator of a city's calls, transfers and telephone-fraud cases.

Output is contract JSON: call.v1 / transfer.v1 events sorted by ``ts_ms``, case.v1 ground truth and
responder.v1 records. Legitimate traffic deliberately contains look-alikes of every fraud signal (high
fan-out callers, long overseas calls, large transfers to new payees, night activity) so that no single
field separates fraud from normal life. Mule accounts are reused across a ring's cases but rotate (each
lives a few days); popular legitimate payees (clinics, ticketing, courier cash-on-delivery, shared landlords)
receive from many, often new, payers, some of them right after a call from a stranger, so that fan-in alone
is not fraud. case.v1 objects carry two optional extra fields: ``loss_amount`` (the sum of the victim's
fraudulent transfers, 0 when the victim never paid) and ``origin``: ``script`` for a victim a ring worked
through a scenario's script, ``sweep`` for someone who only answered a ring's mass dialling for 120 s or more
(the contract's bar for a case; such a case never has a loss). A case's transfers are the victim's, and, in
a task scam, the 'rebates' a mule account pays the victim (transfer.v1 whose ``subscriber`` is the mule
holder's phone and whose ``payee_account`` is the victim's). ``write_city`` writes ``city.json`` beside the
files: the number of residents (the people the service protects) and the config.
"""

from __future__ import annotations

import bisect
import math
import random
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from operator import itemgetter
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from core.outcomes import CASE_MIN_ANSWERED_S

__all__ = [
    "CITY_META_FILE",
    "CORE_SCENARIOS",
    "DEFAULT_SCENARIO_WEIGHTS",
    "FRAUD_LINE_KINDS",
    "SCENARIOS",
    "SWEEP_CASE_MIN_S",
    "CityConfig",
    "SimulatedCity",
    "iter_jsonl",
    "raw_event_ms",
    "read_city_meta",
    "simulate",
    "write_city",
]

DAY_MS = 86_400_000
HOUR_MS = 3_600_000
MIN_MS = 60_000

SCENARIOS: tuple[str, ...] = (
    "police_impersonation", "investment", "refund", "loan", "romance",
    "task_scam", "boss_impersonation", "kidnapping", "account_cancellation",
)  # fmt: skip
CORE_SCENARIOS: tuple[str, ...] = SCENARIOS[:4]
# The first five keep their old proportions among themselves; the later scripts take 30% of the cases.
DEFAULT_SCENARIO_WEIGHTS: tuple[tuple[str, float], ...] = (
    ("police_impersonation", 0.19), ("investment", 0.154), ("refund", 0.154), ("loan", 0.133), ("romance", 0.07),
    ("task_scam", 0.12), ("boss_impersonation", 0.07), ("kidnapping", 0.04), ("account_cancellation", 0.07),
)  # fmt: skip
# The kinds a fraud line's number can have (the operator's range classes of call.v1).
FRAUD_LINE_KINDS: tuple[str, ...] = ("mobile", "landline", "overseas", "virtual", "voip", "unknown")
# The contract's bar: an answered call this long from a fraud number makes its callee a case.
SWEEP_CASE_MIN_S = CASE_MIN_ANSWERED_S  # the contract's (core.outcomes)
CITY_META_FILE = "city.json"
# Median length of a ring line's answered calls on its 'pitch' days. Since their long calls make cases, it
# is set so that, at the default rates, about as many people become sweep cases as victims are planned.
_SWEEP_PITCH_MEDIAN_S = 40
# Hours from first contact to the first loss, roughly; used to keep most cases inside the window.
_TYPICAL_SPAN_H = {
    "police_impersonation": 2, "investment": 12, "refund": 1, "loan": 12, "romance": 40,
    "task_scam": 60, "boss_impersonation": 20, "kidnapping": 1, "account_cancellation": 2,
}  # fmt: skip
# Scripts run from a 'personal' phone prefer plain mobile lines; others prefer the ranges that look official.
_PREFERRED_KINDS: dict[str, tuple[tuple[str, ...], float]] = {
    "task_scam": (("mobile",), 0.85),
    "boss_impersonation": (("mobile",), 0.95),
    "romance": (("mobile",), 0.5),
    "kidnapping": (("overseas", "unknown", "voip"), 0.6),
    "account_cancellation": (("landline", "virtual", "voip"), 0.6),
}

# Local-hour activity weights (index = local hour 0..23).
_DAYTIME = (0.3, 0.15, 0.08, 0.05, 0.05, 0.15, 0.5, 1.5, 3, 4.5, 5, 5, 4, 4, 4.5, 5, 5, 4.5, 4.5, 4.5, 4, 3, 1.8, 0.8)
_NIGHT = (4, 4, 3.5, 3, 3, 2.5, 2, 1, 0.5, 0.3, 0.3, 0.5, 1, 1.5, 2, 2, 2, 2, 2.5, 3, 3.5, 4, 4, 4)
_OFFICE = (0, 0, 0, 0, 0, 0, 0, 0.2, 1, 4, 5, 5, 2.5, 3.5, 5, 5, 4.5, 4, 2, 1, 0.6, 0.2, 0, 0)
# Relatives abroad live in other time zones, so their calls spread over the day with an evening peak.
_EVENING = (1.5, 1, 0.6, 0.4, 0.4, 0.5, 1, 1.5, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 3, 4, 5, 5, 4, 2.5)
_RING = (0.1, 0, 0, 0, 0, 0, 0, 0.3, 1.5, 4, 5, 5, 3, 4, 5, 5, 5, 4.5, 3.5, 3, 2.5, 1.5, 0.6, 0.3)

# Operator number ranges; fraud and legitimate numbers are drawn from the same ones.
_MOBILE_PREFIXES = (
    "134", "135", "136", "137", "138", "139", "130", "131", "132", "133", "150", "151", "152", "153",
    "155", "156", "157", "158", "159", "180", "181", "182", "183", "185", "186", "187", "188", "189",
    "147", "178", "198", "199",
)  # fmt: skip
_MOBILE_CUM = tuple(np.cumsum([3.0 if p.startswith("13") else 1.0 for p in _MOBILE_PREFIXES]).tolist())
_AREA_CODES = (("21", 8, 6.0), ("10", 8, 1.0), ("20", 8, 1.0), ("755", 8, 1.0), ("571", 8, 0.7), ("25", 8, 0.5))
_AREA_CUM = tuple(np.cumsum([w for _, _, w in _AREA_CODES]).tolist())
_VIRTUAL_PREFIXES = ("170", "171", "162", "165", "167")
_COUNTRIES = (
    ("1", 10), ("44", 10), ("852", 8), ("853", 8), ("886", 9), ("60", 9), ("63", 10), ("855", 9),
    ("81", 10), ("61", 9), ("65", 8), ("84", 9), ("66", 9), ("95", 9), ("49", 10), ("33", 9),
)  # fmt: skip

# (names, cumulative weights) pairs for rng.choices.
_Weighted = tuple[tuple[str, ...], tuple[float, ...]]


def _weighted(pairs: Sequence[tuple[str, float]]) -> _Weighted:
    names = tuple(n for n, _ in pairs)
    return names, tuple(np.cumsum([w for _, w in pairs]).tolist())


_CH_LEGIT = _weighted(
    [("mobile_app", 0.55), ("third_party", 0.25), ("online_bank", 0.12), ("atm", 0.04), ("counter", 0.04)]
)
_CH_FRAUD = _weighted(
    [("mobile_app", 0.52), ("online_bank", 0.28), ("atm", 0.07), ("counter", 0.08), ("third_party", 0.05)]
)
_CH_BIG = _weighted([("online_bank", 0.38), ("mobile_app", 0.32), ("counter", 0.25), ("third_party", 0.05)])
_CH_SHOP = _weighted([("mobile_app", 0.6), ("third_party", 0.4)])
_CH_REBATE = _weighted([("mobile_app", 0.5), ("third_party", 0.35), ("online_bank", 0.15)])
_CH_URGENT = _weighted([("online_bank", 0.45), ("mobile_app", 0.48), ("counter", 0.07)])
_CH_RANSOM = _weighted([("mobile_app", 0.55), ("online_bank", 0.3), ("atm", 0.1), ("counter", 0.05)])
_KIND_SUSPICIOUS = _weighted([("overseas", 0.32), ("virtual", 0.3), ("voip", 0.24), ("unknown", 0.14)])
_KIND_CONTACT = _weighted([("mobile", 0.75), ("landline", 0.22), ("overseas", 0.03)])
_KIND_TELEMARKETER = _weighted(
    [("voip", 0.3), ("virtual", 0.3), ("mobile", 0.25), ("unknown", 0.1), ("landline", 0.05)]
)
_KIND_AGENT = _weighted([("mobile", 0.5), ("landline", 0.35), ("virtual", 0.15)])
_KIND_LENDER = _weighted([("voip", 0.35), ("virtual", 0.25), ("landline", 0.2), ("mobile", 0.2)])
_KIND_BANK = _weighted([("landline", 0.75), ("voip", 0.25)])
_KIND_COURIER = _weighted([("mobile", 0.6), ("virtual", 0.4)])
_KIND_SERVICE = _weighted([("landline", 0.45), ("voip", 0.25), ("virtual", 0.15), ("mobile", 0.15)])
_KIND_WRONG = _weighted([("mobile", 0.8), ("landline", 0.1), ("unknown", 0.1)])
_STATUS = _weighted([("available", 0.82), ("busy", 0.12), ("off_duty", 0.06)])


@dataclass(frozen=True)
class CityConfig:
    """Size, seed, time window and geography of one simulated city."""

    subscribers: int = 3000
    days: float = 1.0
    seed: int = 1
    start_ms: int = 1_767_225_600_000  # 2026-01-01T00:00Z
    victims_per_10k_per_day: float = 12.0  # far above reality so a small city has cases to learn from
    fraud_rings: int = 6
    center_lat: float = 31.23
    center_lon: float = 121.47
    radius_km: float = 15.0
    police_stations: int = 8
    officers_per_station: int = 4
    grid_workers: int = 40
    utc_offset_hours: float = 8.0  # daily rhythms follow local time
    # (scenario, weight) pairs of the planned cases; a scenario left out (or at 0) never happens. None: the
    # default mix (DEFAULT_SCENARIO_WEIGHTS).
    scenario_weights: tuple[tuple[str, float], ...] | None = None
    # (kind, weight) pairs of the ring lines' number kinds. None: 30% plain mobile SIMs, the rest from
    # suspicious-looking ranges (overseas, virtual, voip, unknown).
    fraud_line_kinds: tuple[tuple[str, float], ...] | None = None
    # Multiplies the rates of the legitimate look-alikes (bursts, big new payees, calls then payments...).
    lookalike_scale: float = 1.0
    # Multiplies the durations of scam calls and the gaps between a case's steps.
    scam_time_scale: float = 1.0
    # Share of a ring line's days spent on a longer pitch (most answered sweep calls of 120 s come from them).
    sweep_pitch_share: float = 0.2
    refuse_share: float = 0.24  # planned victims who never pay (more go unpaid when the window ends first)
    # Share of answered calls whose connect the operator signals (``call_start.v1``): 0 an operator without a
    # signalling feed, 1 every answered call, in between a feed that drops messages. Drawn from a generator of
    # its own, so the rest of the city is the same whatever the share.
    signalling: float = 0.0
    # Share of rings that never sweep: their lines call only the victims they work, so a fraud line's fan-out
    # is one or two, as a ring with a bought SIM per victim has (elsewhere most fraud lines look like that; a
    # model that only ever met sweeping rings took a targeted line for a legitimate new contact).
    targeted_ring_share: float = 0.0
    # A police feed in the stream: each case with a loss is reported this many days after its first loss (a
    # ``case.v1`` with ``reported_ms``, for the reports topic), if that falls within the city's window. None: no
    # feed (an operator the police do not share reports with).
    report_delay_days: float | None = None

    def __post_init__(self) -> None:
        if not 0 <= self.targeted_ring_share <= 1:
            raise ValueError("targeted_ring_share is a share between 0 and 1")
        if self.report_delay_days is not None and self.report_delay_days < 0:
            raise ValueError("report_delay_days must not be negative")
        if self.subscribers < 1 or self.days <= 0:
            raise ValueError("a city needs at least one subscriber and a positive number of days")
        counts = (self.fraud_rings, self.police_stations, self.officers_per_station, self.grid_workers)
        if min(counts) < 0 or self.victims_per_10k_per_day < 0 or self.radius_km <= 0:
            raise ValueError("counts and rates must not be negative, the radius must be positive")
        if self.lookalike_scale < 0 or self.scam_time_scale <= 0:
            raise ValueError("the look-alike scale must not be negative, the scam time scale must be positive")
        if not (0 <= self.sweep_pitch_share <= 1 and 0 <= self.refuse_share <= 1 and 0 <= self.signalling <= 1):
            raise ValueError("sweep_pitch_share, refuse_share and signalling are shares between 0 and 1")
        for pairs, names, what in (
            (self.scenario_weights, SCENARIOS, "scenario"),
            (self.fraud_line_kinds, FRAUD_LINE_KINDS, "fraud line kind"),
        ):
            if pairs is None:
                continue
            unknown = [name for name, _ in pairs if name not in names]
            if unknown:
                raise ValueError(f"unknown {what}(s) {unknown}; known: {list(names)}")
            if any(w < 0 for _, w in pairs) or not any(w > 0 for _, w in pairs):
                raise ValueError(f"{what} weights must not be negative and at least one must be positive")

    @property
    def scenario_mix(self) -> dict[str, float]:
        """Scenario -> weight, for the scenarios that happen in this city (weight > 0)."""
        pairs = DEFAULT_SCENARIO_WEIGHTS if self.scenario_weights is None else self.scenario_weights
        mix: dict[str, float] = {}
        for name, weight in pairs:
            mix[name] = mix.get(name, 0.0) + weight
        return {name: mix[name] for name in SCENARIOS if mix.get(name, 0.0) > 0}


@dataclass
class SimulatedCity:
    """The simulator's output: events sorted by time, ground-truth cases and responders.

    ``meta`` describes the city (``residents`` and the config it was made from); ``write_city`` writes it
    as city.json.
    """

    events: list[dict[str, Any]]
    cases: list[dict[str, Any]]
    responders: list[dict[str, Any]]
    meta: dict[str, Any] = field(default_factory=dict)


def simulate(config: CityConfig) -> SimulatedCity:
    """Simulate ``config.days`` of a city; the same config always gives identical output."""
    return _Sim(config).run()


def raw_event_ms(event: dict[str, Any]) -> int:
    """A contract line's own time: its ``ts_ms``, or a police report's ``reported_ms``."""
    return int(event["ts_ms"] if "ts_ms" in event else event["reported_ms"])


def write_city(city: SimulatedCity, out_dir: Path) -> dict[str, Path]:
    """Write events.jsonl, cases.jsonl, responders.jsonl and city.json into ``out_dir``; return their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    for name, rows in (("events", city.events), ("cases", city.cases), ("responders", city.responders)):
        path = out_dir / f"{name}.jsonl"
        with path.open("wb") as fh:
            fh.write(b"".join(orjson.dumps(row) + b"\n" for row in rows))
        paths[name] = path
    if city.meta:
        path = out_dir / CITY_META_FILE
        path.write_bytes(orjson.dumps(city.meta, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n")
        paths["city"] = path
    return paths


def read_city_meta(path: Path | str) -> dict[str, Any] | None:
    """The city.json beside a simulated city's files (``path``: its folder or one of its files), or None.

    None when there is no such file or it holds no positive ``residents`` count (a stream from elsewhere),
    so that a caller falls back to counting the numbers it sees.
    """
    where = Path(path)
    meta_path = (where if where.is_dir() else where.parent) / CITY_META_FILE
    try:
        meta = orjson.loads(meta_path.read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return None
    if not isinstance(meta, dict):
        return None
    residents = meta.get("residents")
    if not isinstance(residents, int) or isinstance(residents, bool) or residents < 1:
        return None
    return meta


def iter_jsonl(path: Path) -> Iterator[dict[str, Any]]:
    """Yield the JSON objects of a .jsonl file, skipping blank lines."""
    with path.open("rb") as fh:
        for line in fh:
            if line.strip():
                yield orjson.loads(line)


class _Clock:
    """Draws timestamps inside the window following a local-hour activity profile."""

    def __init__(self, start_ms: int, days: float, utc_offset_hours: float) -> None:
        self.start = start_ms
        self.end = start_ms + int(days * DAY_MS)
        self.n_days = max(1, math.ceil(days))
        self.offset_ms = int(utc_offset_hours * HOUR_MS)
        self.first_hour = ((start_ms + self.offset_ms) // HOUR_MS) % 24

    def profile(self, weights: Sequence[float], shift: int = 0) -> list[float]:
        """Cumulative weights indexed by the hour of a window day (not of a local day)."""
        return np.cumsum([weights[(self.first_hour + i - shift) % 24] for i in range(24)]).tolist()

    def at(self, rng: random.Random, day: int, cum: list[float]) -> int:
        hour = bisect.bisect_right(cum, rng.random() * cum[-1])
        return self.start + day * DAY_MS + hour * HOUR_MS + int(rng.random() * HOUR_MS)

    def local_hour(self, ts: int) -> int:
        return ((ts + self.offset_ms) // HOUR_MS) % 24


class _Ids:
    """Unique phone numbers and account ids; one source for legitimate and fraud alike."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.used: set[str] = set()

    def _digits(self, n: int) -> str:
        return str(self.rng.randrange(10 ** (n - 1), 10**n))

    def _candidate(self, kind: str) -> str:
        rng = self.rng
        if kind == "mobile":
            prefix = rng.choices(_MOBILE_PREFIXES, cum_weights=_MOBILE_CUM)[0]
            return f"+86{prefix}{rng.randrange(10**8):08d}"
        if kind in ("landline", "voip"):
            area, digits, _ = rng.choices(_AREA_CODES, cum_weights=_AREA_CUM)[0]
            return f"+86{area}{self._digits(digits)}"
        if kind == "virtual":
            return f"+86{rng.choice(_VIRTUAL_PREFIXES)}{rng.randrange(10**8):08d}"
        if kind == "overseas":
            code, digits = rng.choice(_COUNTRIES)
            return f"+{code}{self._digits(digits)}"
        return f"+86{self._digits(rng.randint(6, 9))}"  # odd-length ranges the operator cannot classify

    def number(self, kind: str) -> str:
        while True:
            num = self._candidate(kind)
            if num not in self.used:
                self.used.add(num)
                return num

    def account(self) -> str:
        while True:
            acc = f"ACC{self._digits(12)}"
            if acc not in self.used:
                self.used.add(acc)
                return acc


class _Sub:
    """One subscriber of the operator and bank customer."""

    __slots__ = (
        "abroad_payee", "accounts", "activity", "contact_cum", "contacts", "cum", "ext_contacts", "grid",
        "home", "idx", "landlord", "night", "payee_cum", "payees", "phone", "relative", "transfer_rate",
        "typical", "work",
    )  # fmt: skip

    def __init__(self, idx: int, phone: str, grid: int, home: tuple[float, float]) -> None:
        self.idx = idx
        self.phone = phone
        self.grid = grid
        self.home = home
        self.work: tuple[float, float] | None = None
        self.night = False
        self.activity = 1.0
        self.cum: list[float] = []
        # (number, kind, subscriber index or -1)
        self.contacts: list[tuple[str, str, int]] = []
        self.contact_cum: list[float] = []
        self.ext_contacts: list[tuple[str, str]] = []
        self.accounts: list[str] = []
        self.payees: list[str] = []
        self.payee_cum: list[float] = []
        self.typical = 300.0
        self.transfer_rate = 0.5
        self.relative: str | None = None
        self.abroad_payee = ""
        self.landlord: str | None = None


@dataclass
class _Caller:
    """A legitimate organisation or ring line that calls many people."""

    number: str
    kind: str
    account: str = ""


@dataclass
class _Ring:
    """A fraud ring: its phone lines, mule accounts, scenarios and working hours.

    ``mules`` holds slots; each slot is a sequence of (active from, active until, account): a ring keeps a few
    mule accounts in use at once and replaces each one after a few days (frozen, or burnt by reports).
    """

    lines: list[tuple[str, str]]
    mules: list[list[tuple[int, int, str]]]
    scenarios: list[str]
    cum: list[float] = field(default_factory=list)
    # Mule account -> the plain mobile number of its holder (the payer's phone of a rebate it sends).
    holders: dict[str, str] = field(default_factory=dict)
    targeted: bool = False  # its lines never sweep (``CityConfig.targeted_ring_share``)

    def active_mules(self, ts: int) -> list[str]:
        """The mule accounts in use at ``ts`` (one per slot)."""
        out = []
        for slot in self.mules:
            for start, end, account in slot:
                if start <= ts < end:
                    out.append(account)
                    break
            else:
                out.append(slot[-1][2])
        return out


# A planned fraud call (ts, (number, kind), answered, duration_s) and transfer (ts, amount, payee, channel).
_PlanCall = tuple[int, tuple[str, str], bool, int]
_PlanTransfer = tuple[int, float, str, str]
# A planned transfer from a mule account to the victim (ts, amount, mule account): a 'rebate' or 'bonus'.
_PlanRebate = tuple[int, float, str]


class _Sim:
    """Holds the state of one simulation run; ``run`` does everything in a fixed order."""

    def __init__(self, cfg: CityConfig) -> None:
        self.cfg = cfg
        self.rng = random.Random(cfg.seed)
        self.np_rng = np.random.default_rng(cfg.seed & 0xFFFF_FFFF_FFFF_FFFF)
        self.clock = _Clock(cfg.start_ms, cfg.days, cfg.utc_offset_hours)
        self.ids = _Ids(self.rng)
        self.mix = cfg.scenario_mix
        # Plans return calls and the victim's transfers; the few that also pay the victim leave those here.
        self._rebates: list[_PlanRebate] = []
        self.events: list[dict[str, Any]] = []
        self.deg_lat = 1.0 / 110.574
        self.deg_lon = 1.0 / (111.320 * math.cos(math.radians(cfg.center_lat)))
        self.day_cum = self.clock.profile(_DAYTIME)
        self.night_cum = self.clock.profile(_NIGHT)
        self.office_cum = self.clock.profile(_OFFICE)
        self.evening_cum = self.clock.profile(_EVENING)

    # ---- geography -------------------------------------------------------------------------------
    def _offset(self, point: tuple[float, float], dx_km: float, dy_km: float) -> tuple[float, float]:
        return round(point[0] + dy_km * self.deg_lat, 5), round(point[1] + dx_km * self.deg_lon, 5)

    def _in_disk(self, radius_km: float) -> tuple[float, float]:
        r = radius_km * math.sqrt(self.rng.random())
        theta = self.rng.random() * 2 * math.pi
        return self._offset((self.cfg.center_lat, self.cfg.center_lon), r * math.cos(theta), r * math.sin(theta))

    def _jitter(self, point: tuple[float, float], sd_km: float) -> tuple[float, float]:
        return self._offset(point, self.rng.gauss(0, sd_km), self.rng.gauss(0, sd_km))

    def _near_centre(self, centre: tuple[float, float], sd_km: float) -> tuple[float, float]:
        """A point around ``centre`` that stays inside the city radius."""
        radius = self.cfg.radius_km
        for _ in range(8):
            p = self._jitter(centre, sd_km)
            dy = (p[0] - self.cfg.center_lat) / self.deg_lat
            dx = (p[1] - self.cfg.center_lon) / self.deg_lon
            if dx * dx + dy * dy <= radius * radius:
                return p
        return centre

    def _where(self, sub: _Sub, ts: int) -> tuple[float, float]:
        """The serving-cell position of ``sub`` at ``ts``: near work in working hours, else near home."""
        base = sub.home
        if sub.work is not None:
            h = self.clock.local_hour(ts)
            at_work = (h >= 22 or h < 6) if sub.night else (9 <= h < 18)
            if at_work and self.rng.random() < 0.8:
                base = sub.work
        return self._jitter(base, 0.7)

    # ---- event emission --------------------------------------------------------------------------
    def _call(
        self, ts: int, caller: str, kind: str, callee: str, sub: _Sub | None, answered: bool, dur: int
    ) -> dict[str, Any] | None:
        if not self.clock.start <= ts < self.clock.end:
            return None
        ev: dict[str, Any] = {
            "schema": "call.v1",
            "event_id": "",
            "ts_ms": ts,
            "caller": caller,
            "callee": callee,
            "answered": answered,
            "duration_s": dur if answered else 0,
            "caller_kind": kind,
        }
        if sub is not None and self.rng.random() < 0.94:
            ev["callee_lat"], ev["callee_lon"] = self._where(sub, ts)
        self.events.append(ev)
        return ev

    def _transfer(
        self, ts: int, sub: _Sub, payee: str, amount: float, channel: str, account: str | None = None
    ) -> dict[str, Any] | None:
        ev = self._transfer_event(ts, sub.phone, account or sub.accounts[0], payee, amount, channel)
        if ev is None:
            return None
        r = self.rng.random()
        if channel in ("atm", "counter"):
            if r < 0.97:
                ev["lat"], ev["lon"] = self._jitter(sub.home, 1.5)  # a branch near home
        elif r < (0.5 if channel == "online_bank" else 0.92):
            ev["lat"], ev["lon"] = self._where(sub, ts)
        self.events.append(ev)
        return ev

    def _incoming(
        self, ts: int, payer_phone: str, payer_account: str, payee_account: str, amount: float, channel: str
    ) -> dict[str, Any] | None:
        """A transfer *to* a resident from someone outside the city (no location: the payer is elsewhere)."""
        ev = self._transfer_event(ts, payer_phone, payer_account, payee_account, amount, channel)
        if ev is not None:
            self.events.append(ev)
        return ev

    def _transfer_event(
        self, ts: int, subscriber: str, payer_account: str, payee_account: str, amount: float, channel: str
    ) -> dict[str, Any] | None:
        """A transfer.v1 event without location, not yet emitted; None outside the city's window."""
        if not self.clock.start <= ts < self.clock.end:
            return None
        return {
            "schema": "transfer.v1",
            "event_id": "",
            "ts_ms": ts,
            "subscriber": subscriber,
            "payer_account": payer_account,
            "payee_account": payee_account,
            "amount": amount,
            "currency": "CNY",
            "channel": channel,
        }

    def _amount(self, median: float, sigma: float, round_p: float, lo: float = 1.0, hi: float = 2e6) -> float:
        x = min(hi, max(lo, median * math.exp(self.rng.gauss(0, sigma))))
        if self.rng.random() < round_p:
            step = 100 if x < 10_000 else 1000
            x = max(step, round(x / step) * step)
        return round(x, 2)

    def _duration(self, median_s: float, sigma: float, lo: int, hi: int) -> int:
        return int(min(hi, max(lo, median_s * math.exp(self.rng.gauss(0, sigma)))))

    def _mins(self, lo: int, hi: int) -> int:
        """A delay of ``lo``..``hi`` minutes with random seconds, so no gap is a round number of minutes."""
        return self.rng.randint(lo, hi) * MIN_MS + self.rng.randrange(MIN_MS)

    def _pick(self, w: _Weighted) -> str:
        return self.rng.choices(w[0], cum_weights=w[1])[0]

    # ---- population ------------------------------------------------------------------------------
    def _build(self) -> None:
        cfg, rng = self.cfg, self.rng
        n_grids = max(1, math.ceil(cfg.grid_workers / 2))
        self.grid_centres = [self._in_disk(cfg.radius_km * 0.85) for _ in range(n_grids)]
        grid_cum = np.cumsum(self.np_rng.lognormal(0.0, 0.6, n_grids)).tolist()
        sd = max(0.5, cfg.radius_km * 0.12)
        phones = [self.ids.number("mobile") for _ in range(cfg.subscribers)]
        self.subs: list[_Sub] = []
        self.by_grid: list[list[int]] = [[] for _ in range(n_grids)]
        for i, phone in enumerate(phones):
            g = bisect.bisect_right(grid_cum, rng.random() * grid_cum[-1])
            sub = _Sub(i, phone, g, self._near_centre(self.grid_centres[g], sd))
            self.subs.append(sub)
            self.by_grid[g].append(i)
        self.by_phone = sorted(range(len(phones)), key=phones.__getitem__)

        self.merchants = [self.ids.account() for _ in range(max(50, cfg.subscribers // 25))]
        self.utilities = [self.ids.account() for _ in range(8)]
        n = cfg.subscribers
        # Landlords and letting agencies with several tenants each.
        self.landlords = [self.ids.account() for _ in range(max(10, n // 60))]
        # Popular payees many people pay once (clinics, ticketing, travel agencies, online checkouts), each with
        # a customer-service line that sometimes calls first ("confirming your booking, please pay the deposit").
        self.popular = [
            _Caller(self.ids.number(k), k, self.ids.account())
            for k in (self._pick(_KIND_SERVICE) for _ in range(max(8, n // 250)))
        ]
        self.dealers = [
            _Caller(self.ids.number(k), k, self.ids.account())
            for k in (self._pick(_KIND_AGENT) for _ in range(max(5, n // 800)))
        ]
        self.couriers = [
            [_Caller(self.ids.number(k), k) for k in (self._pick(_KIND_COURIER) for _ in range(rng.randint(2, 5)))]
            for _ in range(n_grids)
        ]
        # Cash-on-delivery payments go to a few courier company accounts, each serving several grids.
        self.courier_accounts = [self.ids.account() for _ in range(max(2, n_grids // 4))]
        self.services = [
            self.ids.number("landline" if rng.random() < 0.7 else "mobile") for _ in range(max(50, n // 30))
        ]
        self.shared_externals: list[tuple[str, str]] = []
        self.outside_accounts: dict[str, str] = {}  # an outside contact's number -> the account it pays from
        for sub in self.subs:  # all accounts first: family members pay each other's real accounts
            sub.accounts = [self.ids.account() for _ in range(rng.choices((1, 2, 3), cum_weights=(65, 93, 100))[0])]
        for sub in self.subs:
            self._profile_sub(sub)

    def _profile_sub(self, sub: _Sub) -> None:
        cfg, rng = self.cfg, self.rng
        sub.activity = min(3.0, max(0.3, math.exp(rng.gauss(0, 0.45))))
        sub.night = rng.random() < 0.06
        sub.cum = self.night_cum if sub.night else self.day_cum
        if rng.random() < 0.65:
            sub.work = self._near_centre(rng.choice(self.grid_centres), 1.5)
        sub.typical = min(20_000.0, max(20.0, 280.0 * math.exp(rng.gauss(0, 0.9))))
        sub.transfer_rate = min(2.0, max(0.05, 0.5 * math.exp(rng.gauss(0, 0.6))))

        weights: list[float] = []
        family_subs: list[int] = []
        groups = ((rng.randint(2, 6), 5.0), (rng.randint(2, 18), 2.0), (rng.randint(0, 14), 1.5))
        total = 0
        for count, weight in groups:
            for _ in range(count):
                if total >= 40:
                    break
                total += 1
                if rng.random() < 0.55 and cfg.subscribers > 1:
                    pool = self.by_grid[sub.grid] if rng.random() < 0.6 else None
                    j = rng.choice(pool) if pool else rng.randrange(cfg.subscribers)
                    if j == sub.idx:
                        j = (j + 1) % cfg.subscribers
                    sub.contacts.append((self.subs[j].phone, "mobile", j))
                    if weight == 5.0:
                        family_subs.append(j)
                else:
                    ext = self._external_contact()
                    sub.contacts.append((ext[0], ext[1], -1))
                    sub.ext_contacts.append(ext)
                weights.append(weight * (0.5 + rng.random()))
        sub.contact_cum = np.cumsum(weights).tolist()

        if rng.random() < 0.04:
            sub.relative = self.ids.number("overseas")
            sub.abroad_payee = self.ids.account()
            sub.ext_contacts.append((sub.relative, "overseas"))
        payees: list[str] = []
        pw: list[float] = []
        for j in family_subs[:3]:
            payees.append(self.subs[j].accounts[0])
            pw.append(3.0)
        if rng.random() < 0.35:
            sub.landlord = rng.choice(self.landlords)
        for acc in rng.sample(self.utilities, 2):
            payees.append(acc)
            pw.append(1.0)
        for acc in rng.sample(self.merchants, rng.randint(2, 5)):
            payees.append(acc)
            pw.append(2.0)
        for _ in range(rng.randint(0, 2)):
            payees.append(self.ids.account())
            pw.append(1.5)
        sub.payees = payees
        sub.payee_cum = np.cumsum(pw).tolist()

    def _external_contact(self) -> tuple[str, str]:
        # Families share some outside numbers (a grandparent's landline), so reuse a few.
        if self.shared_externals and self.rng.random() < 0.25:
            return self.rng.choice(self.shared_externals)
        kind = self._pick(_KIND_CONTACT)
        ext = (self.ids.number(kind), kind)
        self.shared_externals.append(ext)
        return ext

    def _responders(self) -> list[dict[str, Any]]:
        cfg, out = self.cfg, []
        for s in range(cfg.police_stations):
            unit, where = f"PS{s + 1:02d}", self._in_disk(cfg.radius_km * 0.85)
            for k in range(cfg.officers_per_station):
                lat, lon = self._jitter(where, 0.15)
                out.append(self._responder(f"{unit}-{k + 1:02d}", "police", unit, lat, lon))
        counts = [0] * len(self.grid_centres)
        for w in range(cfg.grid_workers):
            g = w % len(self.grid_centres)
            counts[g] += 1
            unit = f"G{g + 1:02d}"
            lat, lon = self._jitter(self.grid_centres[g], 0.4)
            out.append(self._responder(f"{unit}-{counts[g]:02d}", "grid_worker", unit, lat, lon))
        return out

    def _responder(self, rid: str, kind: str, unit: str, lat: float, lon: float) -> dict[str, Any]:
        return {
            "schema": "responder.v1",
            "responder_id": rid,
            "kind": kind,
            "unit": unit,
            "lat": lat,
            "lon": lon,
            "status": self._pick(_STATUS),
        }

    # ---- ordinary life ---------------------------------------------------------------------------
    def _daily_life(self, day: int) -> None:
        subs, rng, clock = self.subs, self.rng, self.clock
        act = np.array([s.activity for s in subs])
        rate = np.array([s.transfer_rate for s in subs])
        n = len(subs)
        pois = self.np_rng.poisson
        outs = pois(2.6 * act).tolist()
        ext_ins = pois(1.2 * act).tolist()
        out_unknown = pois(0.4 * act).tolist()
        couriers = pois(0.35, n).tolist()
        wrongs = pois(0.06, n).tolist()
        transfers = pois(rate).tolist()
        for i, sub in enumerate(subs):
            cum = sub.cum
            for _ in range(outs[i]):
                num, kind, j = rng.choices(sub.contacts, cum_weights=sub.contact_cum)[0]
                ts = clock.at(rng, day, cum)
                answered = rng.random() < 0.82
                dur = self._duration(75, 1.1, 3, 7200)
                self._call(ts, sub.phone, "mobile", num, self.subs[j] if j >= 0 else None, answered, dur)
            if sub.ext_contacts:
                for _ in range(ext_ins[i]):
                    num, kind = rng.choice(sub.ext_contacts)
                    dur = self._duration(90, 1.0, 3, 7200)
                    self._call(clock.at(rng, day, cum), num, kind, sub.phone, sub, rng.random() < 0.8, dur)
            for _ in range(out_unknown[i]):
                dur = self._duration(60, 0.9, 3, 1800)
                self._call(clock.at(rng, day, cum), sub.phone, "mobile", rng.choice(self.services), None,
                           rng.random() < 0.75, dur)  # fmt: skip
            for _ in range(couriers[i]):
                c = rng.choice(self.couriers[sub.grid])
                dur = self._duration(25, 0.6, 4, 300)
                ts = clock.at(rng, day, self.office_cum)
                answered = rng.random() < 0.8
                self._call(ts, c.number, c.kind, sub.phone, sub, answered, dur)
                if answered and rng.random() < 0.05:  # cash on delivery, paid at the door
                    account = self.courier_accounts[sub.grid % len(self.courier_accounts)]
                    self._transfer(ts + dur * 1000 + self._mins(3, 40), sub, account, self._amount(260, 0.9, 0.3, 20),
                                   "mobile_app")  # fmt: skip
            for _ in range(wrongs[i]):
                kind = self._pick(_KIND_WRONG)
                self._call(clock.at(rng, day, cum), self.ids.number(kind), kind, sub.phone, sub,
                           rng.random() < 0.5, rng.randint(3, 20))  # fmt: skip
            for _ in range(transfers[i]):
                self._routine_transfer(sub, clock.at(rng, day, cum))
            self._occasional(sub, day)

    def _routine_transfer(self, sub: _Sub, ts: int) -> None:
        rng = self.rng
        if rng.random() < 0.85:
            payee = rng.choices(sub.payees, cum_weights=sub.payee_cum)[0]
        else:
            payee = rng.choice(self.merchants) if rng.random() < 0.6 else self.ids.account()
        amount = self._amount(sub.typical, 0.6, 0.2)
        self._transfer(ts, sub, payee, amount, self._pick(_CH_LEGIT), rng.choice(sub.accounts))

    def _occasional(self, sub: _Sub, day: int) -> None:
        """Rare legitimate events that resemble fraud: bursts, big purchases, money sent abroad."""
        rng, clock, scale = self.rng, self.clock, self.cfg.lookalike_scale
        if sub.landlord is not None and rng.random() < 0.012:
            self._transfer(clock.at(rng, day, sub.cum), sub, sub.landlord, self._amount(4500, 0.4, 0.8),
                           self._pick(_CH_LEGIT))  # fmt: skip
        if rng.random() < 0.008 * scale * sub.activity:  # shopping burst: many small payments to many shops
            ts = clock.at(rng, day, sub.cum)
            for payee in rng.sample(self.merchants, rng.randint(4, 14)):
                self._transfer(ts, sub, payee, self._amount(120, 0.8, 0.1), self._pick(_CH_SHOP))
                ts += self._mins(2, 20)
        if rng.random() < 0.003 * scale:  # a car, a flat deposit: large, new payee, no suspicious call needed
            dealer = rng.choice(self.dealers)
            ts = clock.at(rng, day, sub.cum)
            if rng.random() < 0.55:
                self._call(ts - self._mins(60, 480), dealer.number, dealer.kind, sub.phone, sub, True,
                           self._duration(420, 0.6, 120, 3600))  # fmt: skip
            for _ in range(1 if rng.random() < 0.7 else 2):
                self._transfer(ts, sub, dealer.account, self._amount(60_000, 0.9, 0.7, 5000), self._pick(_CH_BIG))
                ts += self._mins(10, 120)
        if sub.relative is not None and rng.random() < 0.35:
            self._relative_call(sub, day)
        if rng.random() < 0.015 * scale:
            self._popular_payment(sub, day)
        if rng.random() < 0.004 * scale:
            self._new_number_then_payment(sub, day)
        if rng.random() < 0.01 * scale:
            self._paid_back(sub, day)

    def _new_number_then_payment(self, sub: _Sub, day: int) -> None:
        """A plumber, a removal man or a second-hand seller rings from a number never seen; a payment follows."""
        rng = self.rng
        kind = "mobile" if rng.random() < 0.9 else "landline"
        ts = self.clock.at(rng, day, sub.cum)
        dur = self._duration(90, 0.7, 20, 900)
        self._call(ts, self.ids.number(kind), kind, sub.phone, sub, True, dur)
        paid = ts + dur * 1000 + self._mins(2, 120)
        self._transfer(paid, sub, self.ids.account(), self._amount(2500, 1.0, 0.6, 100, 60_000), self._pick(_CH_LEGIT))

    def _paid_back(self, sub: _Sub, day: int) -> None:
        """Someone outside the city pays the subscriber (a debt returned, a share of a bill): an incoming transfer."""
        rng = self.rng
        outside = [number for number, kind in sub.ext_contacts if kind == "mobile"]
        if not outside:
            return
        number = rng.choice(outside)
        account = self.outside_accounts.setdefault(number, self.ids.account())
        ts = self.clock.at(rng, day, sub.cum)
        if rng.random() < 0.3:  # 'sending it now'
            dur = self._duration(60, 0.8, 5, 900)
            self._call(ts - dur * 1000 - self._mins(1, 30), number, "mobile", sub.phone, sub, True, dur)
        self._incoming(ts, number, account, sub.accounts[0], self._amount(300, 1.0, 0.5, 10), self._pick(_CH_REBATE))

    def _popular_payment(self, sub: _Sub, day: int) -> None:
        """A one-off payment to a popular payee; sometimes its service line calls first, at length."""
        rng = self.rng
        org = rng.choice(self.popular)
        ts = self.clock.at(rng, day, sub.cum)
        if rng.random() < 0.3:
            dur = self._duration(240, 0.7, 60, 2400)
            self._call(ts - dur * 1000 - self._mins(2, 45), org.number, org.kind, sub.phone, sub, True, dur)
        channel = self._pick(_CH_LEGIT)
        for _ in range(1 if rng.random() < 0.8 else 2):
            self._transfer(ts, sub, org.account, self._amount(900, 1.0, 0.4, 30), channel)
            ts += self._mins(1, 20)

    def _relative_call(self, sub: _Sub, day: int) -> None:
        rng = self.rng
        assert sub.relative is not None
        ts = self.clock.at(rng, day, self.evening_cum)
        answered = rng.random() < 0.85
        dur = self._duration(1500, 0.5, 180, 7200)
        if rng.random() < 0.3:  # the subscriber rings back abroad
            self._call(ts - self._mins(30, 600), sub.phone, "mobile", sub.relative, None, True,
                       self._duration(600, 0.7, 30, 5400))  # fmt: skip
        self._call(ts, sub.relative, "overseas", sub.phone, sub, answered, dur)
        if answered and rng.random() < min(1.0, 0.12 * self.cfg.lookalike_scale):
            if rng.random() < 0.15:
                t = ts + int(rng.uniform(0.3, 0.95) * dur * 1000)
            else:
                t = ts + dur * 1000 + self._mins(5, 240)
            payee = sub.abroad_payee if rng.random() < 0.5 else self.ids.account()
            self._transfer(t, sub, payee, self._amount(12_000, 0.8, 0.6, 500), self._pick(_CH_BIG))

    # ---- callers with a large fan-out ------------------------------------------------------------
    def _targets(self, k: int, exclude: set[int] | None = None) -> list[int]:
        """``k`` subscribers to dial: a block of consecutive numbers (auto-dialers) or a random sample."""
        rng, n = self.rng, len(self.subs)
        k = min(k, n)
        if rng.random() < 0.4:
            start = rng.randrange(n)
            block = [self.by_phone[(start + i) % n] for i in range(k)]
        else:
            block = rng.sample(range(n), k)
        return [i for i in block if not exclude or i not in exclude]

    def _campaign(
        self, caller: _Caller, day: int, fan_out: float, cum: list[float], p_answer: float, median_s: float,
        sigma: float, exclude: set[int] | None = None, sink: list[tuple[int, dict[str, Any]]] | None = None,
    ) -> list[tuple[int, _Sub, int]]:  # fmt: skip
        """One caller's day of dialling; returns the answered calls as (ts, subscriber, duration_s).

        ``sink`` collects every emitted call as (subscriber index, event).
        """
        rng = self.rng
        k = max(1, int(fan_out * math.exp(rng.gauss(0, 0.4))))
        targets = self._targets(k, exclude)
        times = sorted(self.clock.at(rng, day, cum) for _ in targets)
        answered_calls = []
        for ts, i in zip(times, targets, strict=True):
            sub = self.subs[i]
            answered = rng.random() < p_answer
            dur = self._duration(median_s, sigma, 2, 5400)
            ev = self._call(ts, caller.number, caller.kind, sub.phone, sub, answered, dur)
            if ev is not None and sink is not None:
                sink.append((i, ev))
            if ev is not None and answered:
                answered_calls.append((ts, sub, dur))
        return answered_calls

    def _organisations(self) -> None:
        n, rng, scale = len(self.subs), self.rng, self.cfg.lookalike_scale
        kinds = (
            ("telemarketer", _KIND_TELEMARKETER, max(4, n // 800)),
            ("agent", _KIND_AGENT, max(3, n // 1000)),
            ("lender", _KIND_LENDER, max(3, n // 1200)),
            ("bank", _KIND_BANK, max(2, n // 3000)),
        )
        orgs = {
            name: [_Caller(self.ids.number(k), k, self.ids.account()) for k in (self._pick(w) for _ in range(c))]
            for name, w, c in kinds
        }
        for day in range(self.clock.n_days):
            for c in orgs["telemarketer"]:
                if rng.random() < 0.85:
                    self._campaign(c, day, 0.015 * n, self.office_cum, 0.4, 20, 0.8)
            for c in orgs["agent"]:
                for ts, sub, dur in self._campaign(c, day, 0.004 * n, self.office_cum, 0.6, 150, 1.0):
                    if dur >= 300 and rng.random() < 0.04 * scale:  # a deposit after a long talk with the agent
                        t = ts + dur * 1000 + self._mins(60, 48 * 60)
                        self._transfer(t, sub, c.account, self._amount(30_000, 0.7, 0.8, 2000), self._pick(_CH_BIG))
            for c in orgs["lender"]:
                for ts, sub, dur in self._campaign(c, day, 0.005 * n, self.office_cum, 0.55, 120, 1.0):
                    if dur >= 120 and rng.random() < 0.05 * scale:  # a repayment or arrangement fee
                        t = ts + dur * 1000 + self._mins(10, 480)
                        self._transfer(t, sub, c.account, self._amount(2500, 0.8, 0.5, 100), self._pick(_CH_LEGIT))
            for c in orgs["bank"]:
                self._campaign(c, day, 0.01 * n, self.office_cum, 0.7, 180, 0.9)

    # ---- fraud -----------------------------------------------------------------------------------
    def _rings(self) -> list[_Ring]:
        rng, rings = self.rng, []
        line_kinds = None if self.cfg.fraud_line_kinds is None else _weighted(self.cfg.fraud_line_kinds)
        for _ in range(self.cfg.fraud_rings):
            n_lines = rng.randint(3, 9)
            if line_kinds is None:
                # About 30% plain mobile SIMs so that the caller's range alone cannot tell a ring apart.
                n_mobile = max(1, round(0.3 * n_lines))
                kinds = ["mobile"] * n_mobile + [self._pick(_KIND_SUSPICIOUS) for _ in range(n_lines - n_mobile)]
                rng.shuffle(kinds)
            else:
                kinds = [self._pick(line_kinds) for _ in range(n_lines)]
            lines = [(self.ids.number(k), k) for k in kinds]
            ring = _Ring(lines, self._mule_slots(rng.randint(3, 6)), [], self.clock.profile(_RING, rng.randint(-1, 2)))
            # Drawn only when asked for, so a city without targeted rings is the one it always was.
            ring.targeted = self.cfg.targeted_ring_share > 0 and rng.random() < self.cfg.targeted_ring_share
            rings.append(ring)
        enabled = list(self.mix)
        # Every scenario has a ring when there is any ring, and every ring has a scenario.
        for j in range(max(len(rings), len(enabled)) if rings else 0):
            scenarios = rings[j % len(rings)].scenarios
            if enabled[j % len(enabled)] not in scenarios:
                scenarios.append(enabled[j % len(enabled)])
        for ring in rings:
            if rng.random() < 0.5:
                extra = rng.choice(enabled)
                if extra not in ring.scenarios:
                    ring.scenarios.append(extra)
        return rings

    def _mule_slots(self, n_slots: int) -> list[list[tuple[int, int, str]]]:
        """Each slot: accounts back to back, each active for 1.5-6 days (median about 3)."""
        rng, clock = self.rng, self.clock
        slots = []
        for _ in range(n_slots):
            t = clock.start - int(rng.uniform(0, 4) * DAY_MS)
            slot = []
            while t < clock.end + 3 * DAY_MS:  # cases planned near the end may pay a little later
                life = int(min(6.0, max(1.5, 3.0 * math.exp(rng.gauss(0, 0.4)))) * DAY_MS)
                slot.append((t, t + life, self.ids.account()))
                t += life
            slots.append(slot)
        return slots

    def _case_scenarios(self) -> list[str]:
        cfg, rng = self.cfg, self.rng
        expected = cfg.victims_per_10k_per_day * cfg.subscribers / 10_000 * cfg.days
        n = min(cfg.subscribers, int(expected) + (rng.random() < expected - int(expected)))
        # Guarantee the core scenarios (those this city has) whenever there is room.
        chosen = [s for s in CORE_SCENARIOS if s in self.mix][:n]
        names, cum = tuple(self.mix), tuple(np.cumsum(list(self.mix.values())).tolist())
        chosen += [rng.choices(names, cum_weights=cum)[0] for _ in range(n - len(chosen))]
        rng.shuffle(chosen)
        return chosen

    def _sweeps(self, rings: list[_Ring], victims: set[int]) -> list[tuple[_Ring, int, dict[str, Any]]]:
        """Ring lines dial many people a day; most hang up. Victims are left out: their calls are in cases.

        Returns every sweep call as (ring, subscriber index, event).
        """
        n, rng = len(self.subs), self.rng
        out: list[tuple[_Ring, int, dict[str, Any]]] = []
        for day in range(self.clock.n_days):
            for ring in rings:
                if ring.targeted:
                    continue
                for number, kind in ring.lines:
                    if rng.random() < 0.75:
                        line = _Caller(number, kind)
                        median = _SWEEP_PITCH_MEDIAN_S if rng.random() < self.cfg.sweep_pitch_share else 15
                        sink: list[tuple[int, dict[str, Any]]] = []
                        self._campaign(line, day, 0.008 * n, ring.cum, 0.45, median, 0.7, victims, sink)
                        out.extend((ring, i, ev) for i, ev in sink)
        return out

    def _sweep_cases(self, swept: list[tuple[_Ring, int, dict[str, Any]]]) -> list[dict[str, Any]]:
        """The contract's cases among the swept: whoever answered a fraud number's call of 120 s or more.

        They never pay (no script follows in this window); the case lists every fraud call they got and
        takes its scenario from the ring of the first long call.
        """
        calls: dict[int, list[tuple[_Ring, dict[str, Any]]]] = {}
        for ring, i, ev in swept:
            calls.setdefault(i, []).append((ring, ev))
        cases = []
        for i in sorted(calls):
            got = sorted(calls[i], key=lambda pair: pair[1]["ts_ms"])
            long_calls = [ring for ring, ev in got if ev["answered"] and ev["duration_s"] >= SWEEP_CASE_MIN_S]
            if long_calls:
                scenario = self.rng.choice(long_calls[0].scenarios)
                events = [ev for _, ev in got]
                cases.append({"scenario": scenario, "victim": self.subs[i].phone, "events": events, "origin": "sweep"})
        return cases

    def _start_time(self, ring: _Ring, span_h: int) -> int:
        """First contact; slow scenarios start early so that more of them unfold inside the window."""
        clock, rng = self.clock, self.rng
        span = clock.end - clock.start
        limit = clock.end - min(int(0.6 * span), span_h * HOUR_MS)
        for _ in range(30):
            ts = clock.at(rng, rng.randrange(clock.n_days), ring.cum)
            if ts < limit:
                return ts
        return clock.start + int(rng.random() * (limit - clock.start))

    def _fraud(self) -> list[dict[str, Any]]:
        rng = self.rng
        rings = self._rings()
        scenarios = self._case_scenarios() if rings else []
        victim_idx = rng.sample(range(len(self.subs)), len(scenarios))
        swept = self._sweeps(rings, set(victim_idx))
        # A fixed share of victims refuse to pay (more go unpaid when the window ends first).
        refusers = set(rng.sample(range(len(scenarios)), round(self.cfg.refuse_share * len(scenarios))))
        cases = []
        for k, (scenario, vi) in enumerate(zip(scenarios, victim_idx, strict=True)):
            ring = rng.choice([r for r in rings if scenario in r.scenarios])
            cases.append(self._case(scenario, ring, self.subs[vi], k not in refusers))
        return cases + self._sweep_cases(swept)

    def _case(self, scenario: str, ring: _Ring, victim: _Sub, pays: bool) -> dict[str, Any]:
        rng = self.rng
        failed_first = pays and rng.random() < 0.15
        t0 = self._start_time(ring, _TYPICAL_SPAN_H[scenario] + (12 if failed_first else 0))
        start = self._working_hours(t0 + self._mins(60, 20 * 60)) if failed_first else t0
        plan = getattr(self, f"_plan_{scenario}")
        calls: list[_PlanCall]
        transfers: list[_PlanTransfer]
        self._rebates = []
        calls, transfers = plan(ring, start, pays)
        rebates, scale = self._rebates, self.cfg.scam_time_scale
        if scale != 1.0:  # the whole script runs slower or faster; what happens during a call stays during it
            calls = [
                (start + int((ts - start) * scale), line, ans, max(1, round(d * scale))) for ts, line, ans, d in calls
            ]
            transfers = [(start + int((ts - start) * scale), a, payee, ch) for ts, a, payee, ch in transfers]
            rebates = [(start + int((ts - start) * scale), a, mule) for ts, a, mule in rebates]
        if failed_first:  # an earlier try the victim cut short; the ring comes back later
            answered = rng.random() < 0.5
            calls.insert(0, (t0, rng.choice(ring.lines), answered, rng.randint(10, 100)))
        if not pays and rng.random() < 0.6:
            calls += self._repeat_attempts(ring, calls[-1])
        account = victim.accounts[0] if rng.random() < 0.7 else rng.choice(victim.accounts)
        emitted = []
        for ts, (number, kind), answered, dur in calls:
            emitted.append(self._call(ts, number, kind, victim.phone, victim, answered, dur))
        for ts, amount, payee, channel in transfers:
            emitted.append(self._transfer(ts, victim, payee, amount, channel, account))
        for ts, amount, mule in rebates:
            holder = ring.holders.setdefault(mule, self.ids.number("mobile"))
            emitted.append(self._incoming(ts, holder, mule, account, amount, self._pick(_CH_REBATE)))
        events = sorted((e for e in emitted if e is not None), key=itemgetter("ts_ms"))
        return {"scenario": scenario, "victim": victim.phone, "events": events, "origin": "script"}

    def _repeat_attempts(self, ring: _Ring, last: _PlanCall) -> list[_PlanCall]:
        rng = self.rng
        ts = last[0] + last[3] * 1000
        out: list[_PlanCall] = []
        for _ in range(rng.randint(1, 3)):
            ts += int(min(36 * HOUR_MS, max(20 * MIN_MS, 4 * HOUR_MS * math.exp(rng.gauss(0, 0.8)))))
            ts = self._working_hours(ts)
            line = last[1] if rng.random() < 0.5 else rng.choice(ring.lines)
            answered = rng.random() < 0.45
            out.append((ts, line, answered, rng.randint(5, 90)))
        return out

    def _working_hours(self, ts: int) -> int:
        """Rings keep office hours: a follow-up planned for the small hours slides to the next morning."""
        h = self.clock.local_hour(ts)
        if 8 <= h < 22:
            return ts
        return ts + ((8 - h) % 24) * HOUR_MS + self.rng.randrange(3 * HOUR_MS)

    def _other_line(self, ring: _Ring, line: tuple[str, str], p_same: float) -> tuple[str, str]:
        return line if self.rng.random() < p_same else self.rng.choice(ring.lines)

    def _notice_first(
        self, ring: _Ring, t: int, notice_s: tuple[int, int], gap_min: tuple[int, int], p_same: float
    ) -> tuple[list[_PlanCall], int, tuple[str, str]]:
        """A ring line and, 4 times in 10, a short answered notice on it first (``notice_s`` seconds long, the
        pitch ``gap_min`` minutes after): the calls so far, when the pitch comes and on which line."""
        rng = self.rng
        line = rng.choice(ring.lines)
        calls: list[_PlanCall] = []
        if rng.random() < 0.4:
            d = rng.randint(*notice_s)
            calls.append((t, line, True, d))
            t += d * 1000 + self._mins(*gap_min)
            line = self._other_line(ring, line, p_same)
        return calls, t, line

    def _plan_police_impersonation(
        self, ring: _Ring, t: int, pays: bool
    ) -> tuple[list[_PlanCall], list[_PlanTransfer]]:
        """A 'courier'/'telecom' notice, then a long call from 'police'; money goes to a 'safe account'."""
        rng = self.rng
        calls, t, line = self._notice_first(ring, t, (60, 300), (1, 10), 0.3)
        if not pays:
            calls.append((t, line, True, rng.randint(180, 1500)))
            return calls, []
        mules = ring.active_mules(t)
        safe, spare = rng.choice(mules), rng.choice(mules)
        transfers: list[_PlanTransfer] = []
        # A second long 'verification' call sometimes follows and extracts more money.
        for round_ in range(2 if rng.random() < 0.35 else 1):
            d = rng.randint(1200, 3600) if round_ == 0 else rng.randint(900, 2700)
            calls.append((t, line if round_ == 0 else self._other_line(ring, line, 0.6), True, d))
            channel = self._pick(_CH_FRAUD)
            if channel in ("atm", "counter"):
                tt = t + d * 1000 + self._mins(20, 120)
            elif rng.random() < 0.55:
                tt = t + int(rng.uniform(0.4, 0.95) * d * 1000)  # the 'officer' stays on the line
            else:
                tt = t + d * 1000 + self._mins(2, 90)
            for j in range(rng.choices((1, 2, 3), cum_weights=(55, 85, 100))[0]):
                payee = safe if j == 0 or rng.random() < 0.6 else spare
                transfers.append((tt, self._amount(40_000, 0.8, 0.5, 3000), payee, channel))
                tt += self._mins(2, 25)
            t = max(t + d * 1000, tt) + self._mins(30, 180)
        return calls, transfers

    def _plan_investment(self, ring: _Ring, t: int, pays: bool) -> tuple[list[_PlanCall], list[_PlanTransfer]]:
        """An 'advisor' calls several times over hours or days; a small test deposit, then bigger ones."""
        rng = self.rng
        line = rng.choice(ring.lines)
        mules = ring.active_mules(t)
        platform = rng.sample(mules, min(2, len(mules)))
        calls: list[_PlanCall] = []
        transfers: list[_PlanTransfer] = []
        n_calls = rng.randint(3, 7) if pays else rng.randint(2, 4)
        first_pay = 1 if rng.random() < 0.7 else 2
        for i in range(n_calls):
            answered = i == 0 or rng.random() < 0.85
            d = rng.randint(300, 1200) if i == 0 else rng.randint(300, 2400)
            calls.append((t, self._other_line(ring, line, 0.75), answered, d if answered else 0))
            end = t + (d * 1000 if answered else 0)
            if pays and answered and i >= first_pay:
                if not transfers:
                    amount = self._amount(1200, 0.5, 0.6, 300, 5000)
                    transfers.append((end + self._mins(10, 120), amount, platform[0], self._pick(_CH_FRAUD)))
                elif rng.random() < 0.75:
                    amount = self._amount(40_000, 0.8, 0.6, 5000)
                    payee = rng.choice(platform)
                    transfers.append((end + self._mins(10, 180), amount, payee, self._pick(_CH_FRAUD)))
            gap = int(min(30 * HOUR_MS, max(40 * MIN_MS, 3 * HOUR_MS * math.exp(rng.gauss(0, 0.8)))))
            t = self._working_hours(end + gap)
        if pays and len(transfers) < 2:
            last = transfers[-1][0] if transfers else calls[-1][0]
            ts = last + self._mins(30, 600)
            transfers.append((ts, self._amount(30_000, 0.8, 0.6, 5000), platform[0], self._pick(_CH_FRAUD)))
        return calls, transfers

    def _plan_refund(self, ring: _Ring, t: int, pays: bool) -> tuple[list[_PlanCall], list[_PlanTransfer]]:
        """'Customer service' about an order; several quick transfers to new payees."""
        rng = self.rng
        calls, t, line = self._notice_first(ring, t, (30, 120), (1, 30), 0.5)
        if not pays:
            calls.append((t, line, True, rng.randint(60, 600)))
            return calls, []
        d = rng.randint(600, 1800)
        calls.append((t, line, True, d))
        # Half the victims start paying while the 'agent' is still on the line.
        during = rng.random() < 0.5
        tt = t + (int(rng.uniform(0.5, 0.95) * d * 1000) if during else d * 1000 + self._mins(0, 15))
        n = rng.randint(2, 5)
        mules = ring.active_mules(tt)
        payees = rng.sample(mules, min(n, len(mules)))
        transfers: list[_PlanTransfer] = []
        for j in range(n):
            channel = "mobile_app" if rng.random() < 0.7 else self._pick(_CH_FRAUD)
            transfers.append((tt, self._amount(5000, 0.8, 0.4, 300), payees[j % len(payees)], channel))
            tt += self._mins(1, 6)
        return calls, transfers

    def _plan_loan(self, ring: _Ring, t: int, pays: bool) -> tuple[list[_PlanCall], list[_PlanTransfer]]:
        """A loan offer, a second call, then a 'loan fee'; sometimes an 'unfreezing fee' later."""
        rng = self.rng
        line = rng.choice(ring.lines)
        calls: list[_PlanCall] = []
        n_calls = rng.randint(2, 3) if pays else rng.randint(1, 2)
        d = 0
        for i in range(n_calls):
            d = rng.randint(180, 600) if i == 0 else rng.randint(300, 900)
            calls.append((t, self._other_line(ring, line, 0.7), True, d))
            if i < n_calls - 1:
                t = self._working_hours(t + d * 1000 + self._mins(30, 300))
        if not pays:
            return calls, []
        mule = rng.choice(ring.active_mules(t))
        tt = t + d * 1000 + self._mins(10, 120)
        transfers: list[_PlanTransfer] = [(tt, self._amount(3000, 0.6, 0.5, 500, 9000), mule, self._pick(_CH_FRAUD))]
        if rng.random() < 0.4:
            t = self._working_hours(tt + self._mins(120, 24 * 60))
            d = rng.randint(300, 900)
            calls.append((t, self._other_line(ring, line, 0.7), True, d))
            tt = t + d * 1000 + self._mins(10, 90)
            transfers.append((tt, self._amount(8000, 0.6, 0.5, 1000), mule, self._pick(_CH_FRAUD)))
        return calls, transfers

    def _plan_romance(self, ring: _Ring, t: int, pays: bool) -> tuple[list[_PlanCall], list[_PlanTransfer]]:
        """Long, frequent calls over days; money only after trust is built."""
        rng = self.rng
        line = rng.choice(ring.lines)
        calls: list[_PlanCall] = []
        transfers: list[_PlanTransfer] = []
        for i in range(rng.randint(4, 9) if pays else rng.randint(2, 4)):
            d = rng.randint(900, 5400)
            calls.append((t, self._other_line(ring, line, 0.9), True, d))
            if pays and i >= 2 and (rng.random() < 0.5 or not transfers):
                tt = t + d * 1000 + self._mins(10, 240)
                transfers.append((tt, self._amount(15_000, 0.8, 0.5, 1000), rng.choice(ring.active_mules(tt)),
                                  self._pick(_CH_FRAUD)))  # fmt: skip
            t += d * 1000 + int(min(30 * HOUR_MS, max(5 * HOUR_MS, 14 * HOUR_MS * math.exp(rng.gauss(0, 0.4)))))
        return calls, transfers

    def _script_line(self, ring: _Ring, scenario: str) -> tuple[str, str]:
        """The line a script starts from: one of the kinds it prefers when the ring has one."""
        kinds, p = _PREFERRED_KINDS[scenario]
        preferred = [line for line in ring.lines if line[1] in kinds]
        if preferred and self.rng.random() < p:
            return self.rng.choice(preferred)
        return self.rng.choice(ring.lines)

    def _plan_task_scam(self, ring: _Ring, t: int, pays: bool) -> tuple[list[_PlanCall], list[_PlanTransfer]]:
        """A part-time 'job' (liking, reviewing, rating orders) from a 'mentor' on a plain mobile number.

        Small tasks are paid and promptly rebated with a commission (transfers *to* the victim), the sums
        grow over a few days, then a big 'combo task' and 'unfreezing fees' are never paid back.
        """
        rng = self.rng
        line = self._script_line(ring, "task_scam")
        d = rng.randint(180, 900)
        calls: list[_PlanCall] = [(t, line, True, d)]
        transfers: list[_PlanTransfer] = []
        t += d * 1000
        if rng.random() < 0.6:  # a 'welcome bonus' before anything is asked, to make the job look real
            self._rebates.append((t + self._mins(2, 40), self._amount(30, 0.5, 0.5, 5, 200), self._mule(ring, t)))
        if not pays:
            if rng.random() < 0.6:
                t = self._working_hours(t + self._mins(120, 20 * 60))
                calls.append((t, self._other_line(ring, line, 0.8), True, rng.randint(120, 600)))
            return calls, transfers
        amount = self._amount(150, 0.5, 0.6, 30, 600)
        t += self._mins(5, 90)
        for _ in range(rng.randint(2, 4)):  # small tasks, each rebated with a 5-30% 'commission'
            transfers.append((t, amount, self._mule(ring, t), self._pick(_CH_SHOP)))
            self._rebates.append(
                (t + self._mins(3, 40), round(amount * rng.uniform(1.05, 1.3), 2), self._mule(ring, t))
            )
            amount = round(min(amount * rng.uniform(2.0, 4.0), 20_000), -1)
            t = self._working_hours(
                t + int(min(30 * HOUR_MS, max(30 * MIN_MS, 5 * HOUR_MS * math.exp(rng.gauss(0, 0.8)))))
            )
            if rng.random() < 0.4:  # the mentor mostly writes in a chat app; sometimes calls to push
                dur = rng.randint(60, 600)
                calls.append((t, self._other_line(ring, line, 0.85), True, dur))
                t += dur * 1000 + self._mins(2, 30)
        dur = rng.randint(300, 1500)  # the 'combo task': a call to talk the victim into the big one
        calls.append((t, self._other_line(ring, line, 0.85), True, dur))
        t += dur * 1000 + self._mins(5, 60)
        big = self._amount(20_000, 0.7, 0.7, 3000)
        transfers.append((t, big, self._mule(ring, t), self._pick(_CH_FRAUD)))
        for _ in range(rng.choices((0, 1, 2), cum_weights=(45, 80, 100))[0]):  # 'unfreeze your commission'
            t += self._mins(20, 300)
            big = round(big * rng.uniform(0.8, 2.0), -2)
            transfers.append((t, big, self._mule(ring, t), self._pick(_CH_FRAUD)))
        return calls, transfers

    def _plan_boss_impersonation(self, ring: _Ring, t: int, pays: bool) -> tuple[list[_PlanCall], list[_PlanTransfer]]:
        """A boss, teacher or relative 'on a new number': short calls, then one urgent transfer within minutes."""
        rng = self.rng
        line = self._script_line(ring, "boss_impersonation")
        calls: list[_PlanCall] = []
        if rng.random() < 0.5:  # 'save my new number', hours or a day before the request
            calls.append((t, line, True, rng.randint(20, 90)))
            t = self._working_hours(t + self._mins(3 * 60, 26 * 60))
        if not pays:
            calls.append((t, line, True, rng.randint(120, 400)))  # the victim asks questions, then checks
            return calls, []
        d = rng.randint(40, 240)
        calls.append((t, line, True, d))
        tt = t + d * 1000 + self._mins(1, 15)
        transfers: list[_PlanTransfer] = [(tt, self._amount(50_000, 0.7, 0.8, 5000), self._mule(ring, tt),
                                           self._pick(_CH_URGENT))]  # fmt: skip
        if rng.random() < 0.3:  # 'the partner says it has not arrived, send the rest'
            t = tt + self._mins(10, 60)
            d = rng.randint(30, 150)
            calls.append((t, line, True, d))
            tt = t + d * 1000 + self._mins(1, 8)
            transfers.append((tt, self._amount(30_000, 0.7, 0.8, 3000), self._mule(ring, tt), self._pick(_CH_URGENT)))
        return calls, transfers

    def _plan_kidnapping(self, ring: _Ring, t: int, pays: bool) -> tuple[list[_PlanCall], list[_PlanTransfer]]:
        """A frantic 'we hold your child' call, often after missed rings; a large sum paid fast, mostly on the line."""
        rng = self.rng
        line = self._script_line(ring, "kidnapping")
        calls: list[_PlanCall] = []
        for _ in range(rng.choice((0, 0, 1, 2, 3))):  # missed rings in quick succession
            calls.append((t, line, False, 0))
            t += self._mins(1, 6)
        if not pays:
            calls.append((t, line, True, rng.randint(120, 480)))  # the victim reaches the child and hangs up
            return calls, []
        d = rng.randint(480, 2400)
        calls.append((t, line, True, d))
        channel = self._pick(_CH_RANSOM)
        if channel in ("mobile_app", "online_bank") and rng.random() < 0.75:
            tt = t + int(rng.uniform(0.35, 0.85) * d * 1000)  # 'do not hang up or ...'
        else:
            tt = t + d * 1000 + self._mins(5, 40)
        transfers: list[_PlanTransfer] = [(tt, self._amount(80_000, 0.7, 0.8, 10_000), self._mule(ring, tt), channel)]
        if rng.random() < 0.35:
            tt += self._mins(3, 20)
            transfers.append((tt, self._amount(30_000, 0.7, 0.8, 5000), self._mule(ring, tt), channel))
        return calls, transfers

    def _plan_account_cancellation(
        self, ring: _Ring, t: int, pays: bool
    ) -> tuple[list[_PlanCall], list[_PlanTransfer]]:
        """Fake customer service: 'close your student-loan account or membership, or your credit score suffers'.

        A short notice, then a long screen-sharing call during which the victim borrows and sends escalating
        sums to several 'verification' accounts, minutes apart.
        """
        rng = self.rng
        line = self._script_line(ring, "account_cancellation")
        d = rng.randint(120, 480)
        calls: list[_PlanCall] = [(t, line, True, d)]
        t += d * 1000 + self._mins(1, 20)
        line = self._other_line(ring, line, 0.5)
        if not pays:
            calls.append((t, line, True, rng.randint(300, 1500)))
            return calls, []
        d = rng.randint(1800, 4800)
        calls.append((t, line, True, d))
        n = rng.randint(3, 6)
        tt = t + self._mins(10, 25)
        mules = ring.active_mules(tt)
        payees = rng.sample(mules, min(n, len(mules)))
        amount = self._amount(2000, 0.5, 0.7, 500, 8000)
        transfers: list[_PlanTransfer] = []
        for j in range(n):
            channel = "mobile_app" if rng.random() < 0.6 else "online_bank"
            transfers.append((tt, amount, payees[j % len(payees)], channel))
            tt += self._mins(3, 12)
            amount = max(100.0, round(amount * rng.uniform(1.3, 2.2), -2))
        return calls, transfers

    def _mule(self, ring: _Ring, ts: int) -> str:
        return self.rng.choice(ring.active_mules(ts))

    # ---- assembly --------------------------------------------------------------------------------
    def run(self) -> SimulatedCity:
        self._build()
        responders = self._responders()
        for day in range(self.clock.n_days):
            self._daily_life(day)
        self._organisations()
        raw_cases = self._fraud()

        self.events.sort(key=itemgetter("ts_ms"))
        counters = {"call.v1": 0, "transfer.v1": 0}
        seed = self.cfg.seed
        for ev in self.events:  # ids follow time order so they leak nothing about how an event was made
            schema = ev["schema"]
            counters[schema] += 1
            ev["event_id"] = f"{'c' if schema == 'call.v1' else 't'}-{seed}-{counters[schema]}"
        starts = self._signalling()
        cases = self._case_records(raw_cases, starts)
        reports = self._reports(cases)
        if starts or reports:
            self.events = sorted([*self.events, *starts.values(), *reports], key=raw_event_ms)
        return SimulatedCity(self.events, cases, responders, self._meta(cases))

    def _reports(self, cases: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The police reports of the cases with a loss, made ``report_delay_days`` after it, within the window."""
        delay = self.cfg.report_delay_days
        if delay is None:
            return []
        out = []
        for case in cases:
            if case["first_loss_ms"] is None:
                continue
            made = case["first_loss_ms"] + round(delay * DAY_MS)
            if made <= self.clock.end:
                out.append({**case, "reported_ms": made})
        return out

    def _meta(self, cases: list[dict[str, Any]]) -> dict[str, Any]:
        """What city.json says: who the residents are (the service protects them) and how the city was made."""
        cfg = self.cfg
        by_scenario: dict[str, dict[str, int]] = {}
        for case in cases:
            row = by_scenario.setdefault(case["scenario"], {"cases": 0, "with_loss": 0})
            row["cases"] += 1
            row["with_loss"] += case["first_loss_ms"] is not None
        return {
            "schema": "city.v1",
            "generator": "fraudwatch sandbox.simulate",
            # Outsiders the residents call (contacts, services) are callees too, but not protected people.
            "residents": cfg.subscribers,
            "days": cfg.days,
            "seed": cfg.seed,
            "start_ms": cfg.start_ms,
            "end_ms": self.clock.end,
            "scenarios": list(self.mix),
            "events": len(self.events),
            "call_starts": sum(1 for e in self.events if e["schema"] == "call_start.v1"),
            "police_reports": sum(1 for e in self.events if e["schema"] == "case.v1"),
            "signalling": cfg.signalling,
            "cases": len(cases),
            "cases_with_loss": sum(c["first_loss_ms"] is not None for c in cases),
            "cases_by_scenario": dict(sorted(by_scenario.items())),
            "config": asdict(cfg),
        }

    def _signalling(self) -> dict[str, dict[str, Any]]:
        """A ``call_start.v1`` per signalled answered call, by the call's event id (which is its ``call_id``)."""
        share = self.cfg.signalling
        if share <= 0:
            return {}
        rng = random.Random(self.cfg.seed * 7919 + 17)
        starts: dict[str, dict[str, Any]] = {}
        for ev in self.events:
            if ev["schema"] != "call.v1" or not ev["answered"] or rng.random() >= share:
                continue
            start = {
                "schema": "call_start.v1",
                "event_id": f"s-{self.cfg.seed}-{len(starts) + 1}",
                "call_id": ev["event_id"],
                "ts_ms": ev["ts_ms"],
                "caller": ev["caller"],
                "callee": ev["callee"],
                "caller_kind": ev["caller_kind"],
            }
            if "callee_lat" in ev:
                start["callee_lat"], start["callee_lon"] = ev["callee_lat"], ev["callee_lon"]
            starts[ev["event_id"]] = start
        return starts

    def _case_records(
        self, raw_cases: list[dict[str, Any]], starts: dict[str, dict[str, Any]] | None = None
    ) -> list[dict[str, Any]]:
        """The cases as ``case.v1``; ``starts``: the signalling of calls, listed with the case's events."""
        starts = starts or {}
        cases = []
        for raw in raw_cases:
            events = raw["events"]
            calls = [e for e in events if e["schema"] == "call.v1"]
            # Rebates paid to the victim are the case's events too, but no loss.
            losses = [e for e in events if e["schema"] == "transfer.v1" and e["subscriber"] == raw["victim"]]
            if not calls:
                continue
            numbers = list(dict.fromkeys(e["caller"] for e in calls))
            cases.append(
                {
                    "schema": "case.v1",
                    "case_id": "",
                    "scenario": raw["scenario"],
                    "victim": raw["victim"],
                    "fraud_numbers": numbers,
                    "first_contact_ms": calls[0]["ts_ms"],
                    "first_loss_ms": losses[0]["ts_ms"] if losses else None,
                    "event_ids": [e["event_id"] for e in events]
                    + [starts[e["event_id"]]["event_id"] for e in calls if e["event_id"] in starts],
                    "loss_amount": round(sum(e["amount"] for e in losses), 2),
                    "origin": raw["origin"],
                }
            )
        cases.sort(key=lambda c: (c["first_contact_ms"], c["victim"]))
        for n, case in enumerate(cases, 1):
            case["case_id"] = f"case-{self.cfg.seed}-{n}"
        return cases
