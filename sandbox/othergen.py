"""A second, independent city generator ("other"), written from the event contract alone.

It exists to measure transfer: a model trained on ``sandbox.simulate`` is evaluated on streams whose social
structure, rhythms, legitimate look-alikes and fraud scripts were imagined separately. It emits the contract's
``call.v1``, ``call_start.v1``, ``transfer.v1`` events plus ``case.v1`` ground truth and ``responder.v1``.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import orjson

__all__ = [
    "SCENARIOS",
    "OtherCity",
    "OtherConfig",
    "simulate_other",
    "write_other_city",
]

SEC = 1_000
MIN = 60 * SEC
HOUR = 60 * MIN
DAY = 24 * HOUR
CURRENCY = "CNY"
YOUNG, MID, ELDER = 0, 1, 2  # age groups: 18-34, 35-59, 60+


@dataclass(frozen=True)
class OtherConfig:
    """What the other generator makes: city size, span, seed, fraud volume and look-alike rates."""

    residents: int = 5000
    days: float = 3.0
    seed: int = 1
    victims_per_10k_per_day: float = 12.0
    signalling: float = 0.0  # share of answered calls announced by a call_start.v1 when they connect
    start_ms: int = 1_730_649_600_000  # 2024-11-04 00:00 local time (UTC+8), a Monday
    utc_offset_h: int = 8
    sweep_calls_per_10k_per_day: float = 160.0  # ring calls that are not part of a worked victim's script
    sweep_hook_share: float = 0.12  # share of answered sweep calls that last 120 s+ (a case without loss)
    lookalike_scale: float = 1.0  # multiplies the bulk legitimate callers (couriers, telemarketers, ...)
    new_contact_per_10k_per_day: float = 40.0  # estate agents, doctors, tutors, new colleagues
    big_purchase_per_10k_per_day: float = 6.0  # used car, renovation or house deposit to a new payee
    family_emergency_per_10k_per_day: float = 4.0  # a relative calls from a new number and is sent money
    shop_payments_per_resident_day: float = 0.05  # first payments to online sellers many people pay
    trader_share: float = 0.02  # residents who pay many new payees every day
    late_share: float = 0.01  # events written up to ``max_late_s`` after their place
    max_late_s: int = 240
    duplicate_share: float = 0.002
    # The scripts its rings work (None: every one of ``SCENARIOS``); the victims' total stays the same. A
    # leave-one-scenario-out run trains on the others.
    scenarios: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if self.scenarios is not None:
            unknown = sorted(set(self.scenarios) - {s.name for s in SCENARIO_LIST})
            if unknown or not self.scenarios:
                raise ValueError(f"unknown or no scenarios {unknown}; the other generator has {list(SCENARIOS)}")


@dataclass
class OtherCity:
    """A generated city: events in file order, cases, responders and the metadata for city.json."""

    events: list[dict[str, Any]]
    cases: list[dict[str, Any]]
    responders: list[dict[str, Any]]
    meta: dict[str, Any]
    fraud_numbers: list[str] = field(default_factory=list)  # every ring line (for tests; not written out)


# ----------------------------------------------------------------------------------------------------------
# Numbers and accounts


class _Numbers:
    """Issues distinct E.164 numbers of each range class (the operator's caller_kind follows the range)."""

    _MOBILE = tuple(str(p) for p in (*range(130, 140), *range(150, 160), 166, 176, 177, *range(180, 190), 198, 199))
    _VIRTUAL = ("170", "171", "162", "165", "167")
    _AREA = ("10", "20", "21", "22", "23", "24", "25", "27", "28", "29", "311", "371", "531", "571", "591")
    _OVERSEAS = ("855", "63", "95", "856", "60", "66", "84", "1", "44", "61", "81", "82", "65")

    def __init__(self, rnd: random.Random) -> None:
        self.rnd = rnd
        self.used: set[str] = set()
        self.kind: dict[str, str] = {}

    def _new(self, make: Callable[[], str], kind: str) -> str:
        while True:
            number = make()
            if number not in self.used:
                self.used.add(number)
                self.kind[number] = kind
                return number

    def _digits(self, n: int) -> str:
        return str(self.rnd.randrange(10**n)).zfill(n)

    def mobile(self) -> str:
        """A plain mobile number (residents, outsiders, couriers and most fraud lines alike)."""
        return self._new(lambda: "+86" + self.rnd.choice(self._MOBILE) + self._digits(8), "mobile")

    def issue(self, kind: str) -> str:
        """A new number of range class ``kind``."""
        r = self.rnd
        if kind == "mobile":
            return self.mobile()
        if kind == "virtual":
            return self._new(lambda: "+86" + r.choice(self._VIRTUAL) + self._digits(8), kind)
        if kind == "landline":
            return self._new(lambda: "+86" + (area := r.choice(self._AREA)) + self._digits(10 - len(area)), kind)
        if kind == "voip":
            # Internet telephony gateways: odd-length service-looking ranges
            return self._new(lambda: "+86" + r.choice(("95", "96", "400")) + self._digits(r.choice((6, 7))), kind)
        if kind == "overseas":
            return self._new(lambda: "+" + r.choice(self._OVERSEAS) + self._digits(r.choice((8, 9, 10))), kind)
        return self._new(lambda: "+86" + "0" + self._digits(9), "unknown")


class _Accounts:
    """Issues bank account ids of one uniform shape, so that an id never tells a mule from anyone else."""

    _BINS = ("622202", "621700", "622848", "621661", "622588", "623668", "621483", "622908")

    def __init__(self, rnd: random.Random) -> None:
        self.rnd = rnd
        self.used: set[str] = set()

    def new(self) -> str:
        """A fresh 19-digit card-style account id."""
        while True:
            acc = self.rnd.choice(self._BINS) + str(self.rnd.randrange(10**13)).zfill(13)
            if acc not in self.used:
                self.used.add(acc)
                return acc


# ----------------------------------------------------------------------------------------------------------
# Rhythms

# Relative call intensity per local hour (0..23), one row per daily rhythm.
# fmt: off
_PROFILE_WEIGHTS: dict[str, tuple[float, ...]] = {
    "young": (
        1.5, 0.8, 0.3, 0.1, 0.1, 0.1, 0.3, 1.0, 2.0, 2.5, 2.5, 3.0,  # 00-11 h
        4.0, 3.5, 2.5, 2.5, 3.0, 3.5, 4.5, 5.0, 5.5, 5.5, 4.5, 3.0,  # 12-23 h
    ),
    "mid": (
        0.4, 0.2, 0.1, 0.1, 0.1, 0.2, 0.8, 2.5, 4.0, 4.5, 4.0, 3.8,  # 00-11 h
        4.5, 3.5, 3.5, 3.5, 3.8, 4.5, 5.0, 4.5, 4.0, 3.0, 1.8, 0.8,  # 12-23 h
    ),
    "elder": (
        0.1, 0.1, 0.1, 0.1, 0.2, 0.8, 2.5, 4.5, 6.0, 6.0, 5.5, 4.5,  # 00-11 h
        2.5, 2.0, 3.0, 4.0, 4.5, 4.5, 4.5, 4.0, 3.0, 1.2, 0.4, 0.1,  # 12-23 h
    ),
    "office": (
        0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.3, 2.5, 5.0, 5.5, 5.0,  # 00-11 h
        2.0, 3.5, 5.0, 5.0, 4.5, 3.0, 1.0, 0.3, 0.1, 0.0, 0.0, 0.0,  # 12-23 h
    ),
    "ring": (
        0.1, 0.0, 0.0, 0.0, 0.0, 0.0, 0.1, 0.5, 2.0, 4.0, 5.0, 5.0,  # 00-11 h
        3.0, 3.5, 5.0, 5.0, 4.5, 4.0, 3.5, 3.5, 3.5, 2.5, 1.0, 0.3,  # 12-23 h
    ),
    "evening": (
        0.8, 0.2, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.1, 0.1, 0.1, 0.2,  # 00-11 h
        0.3, 0.2, 0.2, 0.2, 0.3, 0.5, 1.0, 2.5, 4.5, 5.0, 4.0, 2.0,  # 12-23 h
    ),
}
# fmt: on
_AGE_PROFILE = ("young", "mid", "elder")


def _cumulative(weights: Sequence[float]) -> list[float]:
    total, out = 0.0, []
    for w in weights:
        total += w
        out.append(total)
    return out


_PROFILES = {name: _cumulative(w) for name, w in _PROFILE_WEIGHTS.items()}
_HOURS = list(range(24))


# ----------------------------------------------------------------------------------------------------------
# The population


@dataclass
class _People:
    phone: list[str]
    age: list[int]
    lat: list[float]
    lon: list[float]
    account: list[str]
    channel_cum: list[list[float]]  # cumulative weights over _CHANNELS
    activity: list[float]
    wealth: list[float]  # savings scale in CNY
    spend: list[float]  # typical transfer amount in CNY
    household: list[int]
    contacts: list[list[str]]  # numbers a resident calls (residents and outsiders)
    contact_cum: list[list[float]]
    contact_kind: list[list[int]]  # 0 household/kin, 1 friend, 2 colleague, 3 outsider
    payees: list[list[tuple[str, float]]]  # known payee accounts with a typical amount
    kin: list[list[int]]  # residents in other households who are family
    by_age: list[list[int]]
    index: dict[str, int]
    outsider_contacts: list[list[str]]


_CHANNELS = ("mobile_app", "online_bank", "atm", "counter", "third_party")
_CHANNEL_BY_AGE = (
    (0.80, 0.05, 0.02, 0.01, 0.12),
    (0.60, 0.22, 0.06, 0.06, 0.06),
    (0.30, 0.08, 0.25, 0.35, 0.02),
)


@dataclass
class _Box:
    lat0: float
    lon0: float
    half: float  # half side in degrees
    districts: list[tuple[float, float]]


def _city_box(cfg: OtherConfig, rnd: random.Random) -> _Box:
    lat0 = rnd.uniform(24.0, 38.0)
    lon0 = rnd.uniform(104.0, 120.0)
    half = 0.04 + 0.06 * math.sqrt(cfg.residents / 10_000)
    n_districts = max(3, round(3 + math.sqrt(cfg.residents) / 25))
    districts = [
        (lat0 + rnd.uniform(-0.7, 0.7) * half, lon0 + rnd.uniform(-0.7, 0.7) * half) for _ in range(n_districts)
    ]
    return _Box(lat0, lon0, half, districts)


def _clip(value: float, centre: float, half: float) -> float:
    return min(centre + half, max(centre - half, value))


def _households(n: int, rnd: random.Random) -> tuple[list[int], list[int]]:
    """Age group and household of each resident, from household types rather than independent ages."""
    types = (
        ("young_single", 0.16),
        ("young_couple", 0.10),
        ("family", 0.34),
        ("three_gen", 0.10),
        ("elder_couple", 0.18),
        ("elder_single", 0.12),
    )
    names, weights = zip(*types, strict=True)
    ages: list[int] = []
    household: list[int] = []
    hh = 0
    while len(ages) < n:
        kind = rnd.choices(names, weights)[0]
        members: list[int]
        if kind == "young_single":
            members = [YOUNG]
        elif kind == "young_couple":
            members = [YOUNG, YOUNG]
        elif kind == "family":
            members = [MID, MID] + [YOUNG] * rnd.choice((0, 1, 1, 2))
        elif kind == "three_gen":
            members = [ELDER, MID, MID, YOUNG][: rnd.choice((3, 4))]
        elif kind == "elder_couple":
            members = [ELDER, ELDER]
        else:
            members = [ELDER]
        for a in members[: n - len(ages)]:
            ages.append(a)
            household.append(hh)
        hh += 1
    return ages, household


def _build_people(
    cfg: OtherConfig,
    rnd: random.Random,
    nrng: np.random.Generator,
    numbers: _Numbers,
    accounts: _Accounts,
    box: _Box,
    shared_payees: dict[str, list[str]],
) -> _People:
    n = cfg.residents
    ages, household = _households(n, rnd)
    # Homes: households cluster around district centres; members share one home.
    hh_count = household[-1] + 1
    hh_district = [rnd.randrange(len(box.districts)) for _ in range(hh_count)]
    hh_home = []
    for d in hh_district:
        dlat, dlon = box.districts[d]
        hh_home.append(
            (
                _clip(rnd.gauss(dlat, box.half * 0.25), box.lat0, box.half),
                _clip(rnd.gauss(dlon, box.half * 0.25), box.lon0, box.half),
            )
        )
    phones = [numbers.mobile() for _ in range(n)]
    activity = [float(x) for x in nrng.lognormal(0.0, 0.55, n)]
    wealth_mu = (math.log(30_000), math.log(120_000), math.log(180_000))
    wealth = [float(math.exp(rnd.gauss(wealth_mu[a], 0.9))) for a in ages]
    spend_mu = (math.log(260), math.log(520), math.log(380))
    spend = [float(math.exp(rnd.gauss(spend_mu[a], 0.7))) for a in ages]
    channel_cum = []
    for a in ages:
        w = [max(0.001, p * rnd.lognormvariate(0, 0.5)) for p in _CHANNEL_BY_AGE[a]]
        channel_cum.append(_cumulative(w))
    by_age: list[list[int]] = [[], [], []]
    for i, a in enumerate(ages):
        by_age[a].append(i)
    people = _People(
        phone=phones,
        age=ages,
        lat=[hh_home[h][0] for h in household],
        lon=[hh_home[h][1] for h in household],
        account=[accounts.new() for _ in range(n)],
        channel_cum=channel_cum,
        activity=activity,
        wealth=wealth,
        spend=spend,
        household=household,
        contacts=[[] for _ in range(n)],
        contact_cum=[[] for _ in range(n)],
        contact_kind=[[] for _ in range(n)],
        payees=[[] for _ in range(n)],
        kin=[[] for _ in range(n)],
        by_age=by_age,
        index={p: i for i, p in enumerate(phones)},
        outsider_contacts=[[] for _ in range(n)],
    )
    _social_graph(people, cfg, rnd, numbers, hh_district, len(box.districts))
    _known_payees(people, rnd, accounts, shared_payees)
    return people


def _social_graph(
    p: _People, cfg: OtherConfig, rnd: random.Random, numbers: _Numbers, hh_district: list[int], n_districts: int
) -> None:
    """Households, kin across households, neighbourhood communities, workplaces and outsider relatives."""
    n = cfg.residents
    members: dict[int, list[int]] = {}
    for i, h in enumerate(p.household):
        members.setdefault(h, []).append(i)
    edges: list[dict[int, tuple[int, float]]] = [{} for _ in range(n)]  # resident -> {other: (kind, weight)}

    def link(a: int, b: int, kind: int, w: float) -> None:
        if a != b and b not in edges[a]:
            edges[a][b] = (kind, w)
            edges[b][a] = (kind, w * rnd.uniform(0.6, 1.4))

    for group in members.values():
        for a in group:
            for b in group:
                if a < b:
                    link(a, b, 0, 6.0)
    # Kin: elderly households have children elsewhere in the city (or outside it, below).
    mids = p.by_age[MID] + p.by_age[YOUNG]
    for group in members.values():
        if any(p.age[m] == ELDER for m in group) and mids:
            for _ in range(rnd.choice((0, 1, 1, 2))):
                child = rnd.choice(mids)
                for m in group:
                    link(m, child, 0, 5.0)
                    p.kin[m].append(child)
                    p.kin[child].append(m)
    # Communities: neighbourhoods within districts of roughly 60-200 people; friends mostly inside.
    by_district: dict[int, list[int]] = {}
    for i, h in enumerate(p.household):
        by_district.setdefault(hh_district[h], []).append(i)
    community = [0] * n
    comm_members: list[list[int]] = []
    for people in by_district.values():
        rnd.shuffle(people)
        k = 0
        while k < len(people):
            size = rnd.randint(60, 200)
            comm_members.append(people[k : k + size])
            for i in people[k : k + size]:
                community[i] = len(comm_members) - 1
            k += size
    for i in range(n):
        n_friends = min(25, int(rnd.expovariate(1 / (4.0 if p.age[i] == ELDER else 6.5))))
        for _ in range(n_friends):
            pool = comm_members[community[i]] if rnd.random() < 0.75 else None
            j = rnd.choice(pool) if pool else rnd.randrange(n)
            # friends are of similar age more often than not
            if p.age[j] != p.age[i] and rnd.random() < 0.5:
                continue
            link(i, j, 1, rnd.lognormvariate(0.3, 0.8))
    # Workplaces: lognormal sizes; most working-age residents belong to one.
    workers = [i for i in range(n) if p.age[i] != ELDER and rnd.random() < 0.78]
    rnd.shuffle(workers)
    k = 0
    while k < len(workers):
        size = max(2, int(rnd.lognormvariate(math.log(12), 0.9)))
        staff = workers[k : k + size]
        for a in staff:
            for b in rnd.sample(staff, min(len(staff), rnd.randint(1, 8))):
                link(a, b, 2, rnd.lognormvariate(0.0, 0.7))
        k += size
    for i in range(n):
        others = list(edges[i].items())
        outs = [
            numbers.issue(rnd.choices(("mobile", "landline", "overseas"), (0.87, 0.08, 0.05))[0])  # kin abroad too
            for _ in range(rnd.choice((1, 2, 2, 3, 4, 5)) + (2 if p.age[i] == ELDER else 0))
        ]
        p.outsider_contacts[i] = outs
        nums = [p.phone[j] for j, _ in others] + outs
        kinds = [kind for _, (kind, _w) in others] + [3] * len(outs)
        weights = [w for _, (_k, w) in others] + [
            rnd.lognormvariate(0.4 if p.age[i] == ELDER else 0.0, 0.8) for _ in outs
        ]
        p.contacts[i] = nums
        p.contact_kind[i] = kinds
        p.contact_cum[i] = _cumulative(weights)


def _known_payees(p: _People, rnd: random.Random, accounts: _Accounts, shared: dict[str, list[str]]) -> None:
    """Each resident's habitual payees: utilities, rent, family, a few shops; amounts are personal."""
    for i in range(len(p.phone)):
        s = p.spend[i]
        payees: list[tuple[str, float]] = [(rnd.choice(shared["utility"]), s * rnd.uniform(0.3, 0.8))]
        if p.age[i] != ELDER and rnd.random() < 0.4:
            payees.append((accounts.new(), round(rnd.choice((1800, 2200, 2500, 3000, 3500, 4200, 5000)), 0)))
        for k in p.kin[i][:2]:
            payees.append((p.account[k], s * rnd.uniform(1.0, 4.0)))
        for _ in range(rnd.randint(1, 4)):
            payees.append((rnd.choice(shared["shop"]), s * rnd.uniform(0.2, 1.2)))
        if rnd.random() < 0.3:
            payees.append((accounts.new(), s * rnd.uniform(2.0, 10.0)))  # own savings or brokerage account
        p.payees[i] = payees


# ----------------------------------------------------------------------------------------------------------
# Emitting events


class _Emitter:
    """Builds contract events with random ids, a serving-cell location and optional signalling."""

    def __init__(self, cfg: OtherConfig, rnd: random.Random, numbers: _Numbers, people: _People, box: _Box) -> None:
        self.cfg = cfg
        self.rnd = rnd
        self.numbers = numbers
        self.people = people
        self.box = box
        # Signalling draws from its own stream, so that a seed gives the same calls at any signalling share.
        self.signal_rnd = random.Random(cfg.seed * 104_729 + 3)
        self.events: list[dict[str, Any]] = []
        self.ids: set[str] = set()
        self.end_ms = cfg.start_ms + int(cfg.days * DAY)

    def _id(self, rnd: random.Random | None = None) -> str:
        while True:
            eid = f"{(rnd or self.rnd).getrandbits(72):018x}"
            if eid not in self.ids:
                self.ids.add(eid)
                return eid

    def _cell(self, idx: int) -> tuple[float, float]:
        p, r = self.people, self.rnd
        # most calls are served near home; some from elsewhere in the city (work, errands)
        if r.random() < 0.8:
            lat, lon = r.gauss(p.lat[idx], 0.006), r.gauss(p.lon[idx], 0.006)
        else:
            lat, lon = (
                r.uniform(-1, 1) * self.box.half + self.box.lat0,
                r.uniform(-1, 1) * self.box.half + self.box.lon0,
            )
        return round(lat, 5), round(lon, 5)

    def call(self, caller: str, callee: str, ts: int, answered: bool, duration: float) -> list[str]:
        """Emit one call (and its call_start when signalled); returns the ids of both. Drops out-of-window."""
        if ts < self.cfg.start_ms or ts >= self.end_ms:
            return []
        r = self.rnd
        duration = round(max(1.0, duration)) if answered else 0
        ev: dict[str, Any] = {
            "schema": "call.v1",
            "event_id": self._id(),
            "ts_ms": ts,
            "caller": caller,
            "callee": callee,
            "answered": answered,
            "duration_s": duration,
            "caller_kind": self.numbers.kind.get(caller, "unknown"),
        }
        idx = self.people.index.get(callee)
        if idx is not None and r.random() < 0.9:
            ev["callee_lat"], ev["callee_lon"] = self._cell(idx)
        ids = [ev["event_id"]]
        sr = self.signal_rnd
        if answered and self.cfg.signalling > 0 and sr.random() < self.cfg.signalling:
            call_id = f"c{sr.getrandbits(64):016x}"
            ev["call_id"] = call_id
            start = {
                "schema": "call_start.v1",
                "event_id": self._id(sr),
                "call_id": call_id,
                "ts_ms": ts,
                "caller": caller,
                "callee": callee,
                "caller_kind": ev["caller_kind"],
            }
            if "callee_lat" in ev:
                start["callee_lat"], start["callee_lon"] = ev["callee_lat"], ev["callee_lon"]
            self.events.append(start)
            ids.append(start["event_id"])
        self.events.append(ev)
        return ids

    def channel(self, idx: int) -> str:
        """The resident's habitual channel for a payment."""
        return self.rnd.choices(_CHANNELS, cum_weights=self.people.channel_cum[idx])[0]

    def transfer(self, idx: int, ts: int, payee: str, amount: float, channel: str | None = None) -> str | None:
        """Emit a transfer initiated by resident ``idx``; None when outside the window."""
        if ts < self.cfg.start_ms or ts >= self.end_ms:
            return None
        r, p = self.rnd, self.people
        channel = channel or self.channel(idx)
        ev: dict[str, Any] = {
            "schema": "transfer.v1",
            "event_id": self._id(),
            "ts_ms": ts,
            "subscriber": p.phone[idx],
            "payer_account": p.account[idx],
            "payee_account": payee,
            "amount": round(max(1.0, amount), 2),
            "currency": CURRENCY,
            "channel": channel,
        }
        if channel in ("atm", "counter"):
            ev["lat"], ev["lon"] = round(r.gauss(p.lat[idx], 0.01), 5), round(r.gauss(p.lon[idx], 0.01), 5)
        elif r.random() < 0.5:
            ev["lat"], ev["lon"] = self._cell(idx)
        self.events.append(ev)
        return str(ev["event_id"])


# ----------------------------------------------------------------------------------------------------------
# Legitimate life


@dataclass
class _World:
    cfg: OtherConfig
    rnd: random.Random
    nrng: np.random.Generator
    numbers: _Numbers
    accounts: _Accounts
    people: _People
    em: _Emitter
    day_starts: list[int]
    weekdays: list[int]
    lookalikes: dict[str, int] = field(default_factory=dict)

    def at(self, day: int, profile: str) -> int:
        """A time on local day ``day`` drawn from an hourly profile."""
        hour = self.rnd.choices(_HOURS, cum_weights=_PROFILES[profile])[0]
        return self.day_starts[day] + hour * HOUR + self.rnd.randrange(HOUR)

    def anytime(self, profile: str) -> int:
        """A time on a random day of the window drawn from an hourly profile."""
        return self.at(self.rnd.randrange(len(self.day_starts)), profile)

    def count(self, per_10k_per_day: float) -> int:
        """How many episodes a rate yields over the city and window."""
        return int(self.nrng.poisson(per_10k_per_day * self.cfg.residents * self.cfg.days / 10_000))

    def note(self, name: str, k: int = 1) -> None:
        self.lookalikes[name] = self.lookalikes.get(name, 0) + k


def _duration(rnd: random.Random, median_s: float, sigma: float) -> float:
    return min(14_400.0, rnd.lognormvariate(math.log(median_s), sigma))


_MEDIAN_BY_KIND = (150.0, 200.0, 80.0, 330.0)  # household/kin, friend, colleague, outsider relative


def _social_calls(w: _World) -> None:
    """Residents call their contacts (and outsiders call them) with age, weekday and personal rhythms."""
    p, rnd = w.people, w.rnd
    base = (3.2, 3.4, 1.6)
    n = w.cfg.residents
    for d, _start in enumerate(w.day_starts):
        weekend = w.weekdays[d] >= 5
        rates = np.array([base[p.age[i]] * p.activity[i] * (0.85 if weekend else 1.0) for i in range(n)])
        counts = w.nrng.poisson(rates)
        for i in np.flatnonzero(counts).tolist():
            profile = _AGE_PROFILE[p.age[i]]
            contacts, cum, kinds = p.contacts[i], p.contact_cum[i], p.contact_kind[i]
            for _ in range(int(counts[i])):
                j = rnd.choices(range(len(contacts)), cum_weights=cum)[0]
                kind = kinds[j]
                if kind == 2 and weekend and rnd.random() < 0.8:
                    continue  # colleagues rarely call at weekends
                t = w.at(d, "office" if kind == 2 and rnd.random() < 0.6 else profile)
                caller, callee = p.phone[i], contacts[j]
                if kind == 3 and rnd.random() < 0.5:
                    caller, callee = callee, caller  # outsider relatives call in as often as they are called
                _ring_until_answered(
                    w, caller, callee, t, 0.82, _MEDIAN_BY_KIND[kind] * (1.4 if p.age[i] == ELDER else 1.0)
                )


def _ring_until_answered(w: _World, caller: str, callee: str, t: int, p_answer: float, median_s: float) -> None:
    """A call, redialled a few minutes later when unanswered (people who know each other retry)."""
    rnd = w.rnd
    for _attempt in range(3):
        if rnd.random() < p_answer:
            w.em.call(caller, callee, t, True, _duration(rnd, median_s, 1.0))
            return
        w.em.call(caller, callee, t, False, 0)
        if rnd.random() < 0.55:
            return
        t += rnd.randint(40, 900) * SEC


@dataclass(frozen=True)
class _BulkCaller:
    name: str
    per_10k: float  # numbers of this kind per 10k residents
    kinds: tuple[tuple[str, float], ...]
    calls_per_day: tuple[int, int]
    p_answer: float
    median_s: float
    long_share: float  # answered calls that run 120 s to 15 min
    profile: str
    repeat: float  # chance the same number calls the same resident again within hours


_BULK = (
    _BulkCaller("courier", 3.0, (("mobile", 1.0),), (15, 70), 0.78, 35, 0.02, "office", 0.25),
    _BulkCaller(
        "telemarketer",
        2.0,
        (("virtual", 0.45), ("landline", 0.3), ("mobile", 0.25)),
        (80, 400),
        0.30,
        18,
        0.07,
        "office",
        0.05,
    ),
    _BulkCaller("debt_collector", 0.4, (("mobile", 0.6), ("landline", 0.4)), (20, 60), 0.45, 110, 0.35, "ring", 0.5),
    _BulkCaller("bank_service", 0.5, (("voip", 0.6), ("landline", 0.4)), (40, 150), 0.55, 95, 0.25, "office", 0.1),
    _BulkCaller(
        "clinic_school_gov", 0.5, (("landline", 0.85), ("virtual", 0.15)), (8, 30), 0.7, 120, 0.3, "office", 0.1
    ),
    _BulkCaller("ride_food_delivery", 2.0, (("mobile", 0.7), ("virtual", 0.3)), (20, 80), 0.85, 25, 0.0, "young", 0.3),
    _BulkCaller(
        "survey_pollster",
        0.4,
        (("overseas", 0.15), ("voip", 0.35), ("landline", 0.5)),
        (50, 200),
        0.25,
        40,
        0.15,
        "office",
        0.0,
    ),
)


def _bulk_callers(w: _World) -> None:
    """Legitimate numbers that call many residents briefly: the sweep look-alikes."""
    rnd, p, n = w.rnd, w.people, w.cfg.residents
    debtors = rnd.sample(range(n), max(3, n // 150))
    for spec in _BULK:
        kinds, weights = zip(*spec.kinds, strict=True)
        count = max(1, round(spec.per_10k * n / 10_000 * w.cfg.lookalike_scale))
        for _ in range(count):
            number = w.numbers.issue(rnd.choices(kinds, weights)[0])
            # each business serves a part of the city (a courier's round, a clinic's patients)
            if spec.name == "debt_collector":
                clientele = debtors
            else:
                clientele = rnd.sample(range(n), min(n, max(50, int(n * rnd.uniform(0.05, 0.4)))))
            for d in range(len(w.day_starts)):
                if w.weekdays[d] == 6 and spec.profile == "office" and rnd.random() < 0.8:
                    continue
                lo, hi = spec.calls_per_day
                scale = max(0.2, min(1.0, n / 10_000)) if spec.name != "debt_collector" else 1.0
                for _ in range(max(1, int(rnd.randint(lo, hi) * scale))):
                    i = rnd.choice(clientele)
                    t = w.at(d, spec.profile)
                    for _rep in range(4):
                        answered = rnd.random() < spec.p_answer * (1.15 if p.age[i] == ELDER else 1.0)
                        long_call = rnd.random() < spec.long_share
                        dur = rnd.uniform(120, 900) if long_call else _duration(rnd, spec.median_s, 0.6)
                        w.em.call(number, p.phone[i], t, answered, min(dur, 119.0) if not long_call else dur)
                        w.note(spec.name)
                        if rnd.random() >= spec.repeat:
                            break
                        t += rnd.randint(2, 240) * MIN


def _new_contacts(w: _World) -> None:
    """Legitimate new numbers whose first call is long: estate agents, doctors, tutors, new colleagues."""
    rnd, p = w.rnd, w.people
    kinds = (
        ("estate_agent", "mobile", 500),
        ("doctor", "landline", 360),
        ("tutor", "mobile", 420),
        ("new_colleague", "mobile", 600),
        ("insurance_agent", "mobile", 700),
        ("lawyer", "landline", 900),
    )
    for _ in range(w.count(w.cfg.new_contact_per_10k_per_day)):
        i = rnd.randrange(w.cfg.residents)
        name, kind, median = rnd.choice(kinds)
        number = w.numbers.issue(kind if rnd.random() < 0.85 else "virtual")
        t = w.anytime("office" if kind == "landline" else _AGE_PROFILE[p.age[i]])
        w.em.call(number, p.phone[i], t, True, max(150.0, _duration(rnd, median, 0.6)))
        w.note(name)
        for _f in range(rnd.choice((0, 1, 1, 2, 3))):
            t += rnd.randint(20, 2000) * MIN
            if rnd.random() < 0.5:
                w.em.call(p.phone[i], number, t, True, _duration(rnd, 180, 0.8))
            else:
                w.em.call(number, p.phone[i], t, rnd.random() < 0.85, _duration(rnd, 200, 0.8))
        if name in ("tutor", "lawyer", "doctor") and rnd.random() < 0.5:
            fee = rnd.choice((800, 1200, 2000, 3000, 5000)) * (3 if name == "lawyer" else 1)
            w.em.transfer(i, t + rnd.randint(10, 600) * MIN, w.accounts.new(), fee)


def _big_purchases(w: _World) -> None:
    """Used car, renovation or house deposit: long calls with a new number, then a large new-payee transfer."""
    rnd, p = w.rnd, w.people
    for _ in range(w.count(w.cfg.big_purchase_per_10k_per_day)):
        i = rnd.choice(p.by_age[MID] * 2 + p.by_age[YOUNG] + p.by_age[ELDER])
        what = rnd.choice(("used_car", "renovation_deposit", "house_deposit", "wedding_banquet"))
        seller = w.numbers.issue("mobile" if rnd.random() < 0.8 else "landline")
        t = w.anytime(_AGE_PROFILE[p.age[i]])
        for _c in range(rnd.choice((1, 1, 2, 3))):
            w.em.call(
                seller if rnd.random() < 0.6 else p.phone[i],
                p.phone[i] if rnd.random() < 0.6 else seller,
                t,
                True,
                rnd.uniform(400, 2600),
            )
            t += rnd.randint(30, 1500) * MIN
        account = w.accounts.new()
        total = {"used_car": 60_000, "renovation_deposit": 30_000, "house_deposit": 200_000, "wedding_banquet": 20_000}[
            what
        ] * rnd.lognormvariate(0, 0.5)
        pay = t - rnd.randint(0, 600) * MIN  # often while the call series is still going on
        parts = rnd.choice((1, 1, 2))
        for _k in range(parts):
            w.em.transfer(
                i, pay, account, round(total / parts, -2), rnd.choice(("online_bank", "counter", "mobile_app"))
            )
            pay += rnd.randint(60, 2880) * MIN
        w.note(what)


def _family_emergencies(w: _World) -> None:
    """A real relative calls from a new number (lost phone, hospital) and is sent money on a new account."""
    rnd, p = w.rnd, w.people
    for _ in range(w.count(w.cfg.family_emergency_per_10k_per_day)):
        i = rnd.choice(p.by_age[ELDER] * 2 + p.by_age[MID])
        number = w.numbers.issue(rnd.choice(("mobile", "mobile", "landline", "overseas")))
        t = w.anytime(_AGE_PROFILE[p.age[i]])
        w.em.call(number, p.phone[i], t, True, rnd.uniform(180, 1500))
        amount = rnd.choice((3000, 5000, 8000, 10_000, 20_000, 50_000))
        pay = t + rnd.randint(5, 90) * MIN
        w.em.transfer(i, pay, w.accounts.new(), amount, "counter" if p.age[i] == ELDER and rnd.random() < 0.5 else None)
        if rnd.random() < 0.5:
            w.em.call(number, p.phone[i], pay + rnd.randint(10, 300) * MIN, True, rnd.uniform(60, 600))
        w.note("family_emergency")


def _shops_and_landlords(w: _World, sellers: list[str]) -> None:
    """Online sellers and new-building landlords receive first payments from many different payers."""
    rnd, p, n = w.rnd, w.people, w.cfg.residents
    popularity = _cumulative([1 / (k + 1) ** 0.8 for k in range(len(sellers))])
    seller_phone = {acc: w.numbers.mobile() for acc in sellers}
    for d in range(len(w.day_starts)):
        for i in np.flatnonzero(w.nrng.random(n) < w.cfg.shop_payments_per_resident_day).tolist():
            idx = int(i)
            acc = rnd.choices(sellers, cum_weights=popularity)[0]
            t = w.at(d, _AGE_PROFILE[p.age[idx]])
            w.em.transfer(idx, t, acc, p.spend[idx] * rnd.uniform(0.2, 2.5), rnd.choice(("mobile_app", "third_party")))
            if rnd.random() < 0.25:  # the seller rings about delivery
                w.em.call(
                    seller_phone[acc],
                    p.phone[idx],
                    t + rnd.randint(30, 1440) * MIN,
                    rnd.random() < 0.8,
                    rnd.uniform(20, 150),
                )
            w.note("online_shop")
    for _ in range(max(1, n // 4000)):
        landlord, phone = w.accounts.new(), w.numbers.mobile()
        for i in rnd.sample(range(n), min(n, rnd.randint(5, 20))):
            t = w.anytime("mid")
            w.em.call(phone, p.phone[i], t, True, rnd.uniform(90, 900))
            w.em.transfer(i, t + rnd.randint(30, 2880) * MIN, landlord, rnd.choice((2000, 3000, 4500, 6000, 9000)))
            w.note("landlord_new_tenant")


def _traders(w: _World) -> None:
    """Small traders pay many new payees and field calls from many unknown mobiles every day."""
    rnd, p, n = w.rnd, w.people, w.cfg.residents
    working = p.by_age[MID] + p.by_age[YOUNG]
    for i in rnd.sample(working, min(len(working), int(n * w.cfg.trader_share))):
        suppliers = [w.accounts.new() for _ in range(rnd.randint(3, 10))]
        for d in range(len(w.day_starts)):
            for _ in range(rnd.randint(2, 9)):
                payee = w.accounts.new() if rnd.random() < 0.6 else rnd.choice(suppliers)
                w.em.transfer(i, w.at(d, "office"), payee, rnd.lognormvariate(math.log(3000), 1.0))
            for _ in range(rnd.randint(4, 20)):
                w.em.call(w.numbers.mobile(), p.phone[i], w.at(d, "mid"), rnd.random() < 0.8, _duration(rnd, 70, 0.9))
        w.note("trader")


def _routine_transfers(w: _World) -> None:
    """Ordinary payments to known payees with person-specific amounts."""
    rnd, p, n = w.rnd, w.people, w.cfg.residents
    base = (0.45, 0.55, 0.18)
    for d in range(len(w.day_starts)):
        counts = w.nrng.poisson([base[p.age[i]] * min(3.0, p.activity[i]) for i in range(n)])
        for i in np.flatnonzero(counts).tolist():
            idx = int(i)
            for _ in range(int(counts[idx])):
                payee, typical = rnd.choice(p.payees[idx])
                t = w.at(d, _AGE_PROFILE[p.age[idx]])
                w.em.transfer(idx, t, payee, typical * rnd.lognormvariate(0, 0.25))
        # abroad remittances and wealth product purchases by a few
        for j in rnd.sample(range(n), max(1, n // 2000)):
            w.em.transfer(
                j,
                w.at(d, "office"),
                w.accounts.new(),
                p.wealth[j] * rnd.uniform(0.05, 0.3),
                rnd.choice(("online_bank", "counter", "third_party")),
            )
            w.note("wealth_or_remittance")


# ----------------------------------------------------------------------------------------------------------
# Fraud


@dataclass
class _Ring:
    ring_id: str
    scenario: str
    lines: list[str]
    mules: list[str]


@dataclass
class _Engagement:
    ring: _Ring
    victim: int
    call_ids: list[str] = field(default_factory=list)
    transfer_ids: list[str] = field(default_factory=list)
    numbers: set[str] = field(default_factory=set)
    first_contact: int | None = None
    first_loss: int | None = None
    engaged: bool = False  # an answered call of 120 s or more in either direction
    loss: float = 0.0


class _Fraud:
    """What a script may do: ring calls, victim callbacks and payments, each recorded on the engagement."""

    def __init__(self, w: _World) -> None:
        self.w = w
        self.rnd = w.rnd
        self.engagements: dict[tuple[int, str], _Engagement] = {}

    def _eng(self, ring: _Ring, victim: int) -> _Engagement:
        key = (victim, ring.ring_id)
        if key not in self.engagements:
            self.engagements[key] = _Engagement(ring, victim)
        return self.engagements[key]

    def call(self, ring: _Ring, line: str, victim: int, t: int, dur: float, answered: bool = True) -> int:
        """A call from a ring line to the victim; returns when it ends."""
        ids = self.w.em.call(line, self.w.people.phone[victim], t, answered, dur)
        if ids:
            e = self._eng(ring, victim)
            e.call_ids += ids
            e.numbers.add(line)
            e.first_contact = t if e.first_contact is None else min(e.first_contact, t)
            e.engaged |= answered and round(dur) >= 120
        return t + int(dur * SEC if answered else 30 * SEC)

    def callback(self, ring: _Ring, line: str, victim: int, t: int, dur: float) -> int:
        """The victim rings a ring line back (a number the fraudsters gave); returns when it ends."""
        ids = self.w.em.call(self.w.people.phone[victim], line, t, True, dur)
        if ids:
            e = self._eng(ring, victim)
            e.call_ids += ids
            e.numbers.add(line)
            e.engaged |= round(dur) >= 120
        return t + int(dur * SEC)

    def pay(
        self, ring: _Ring, victim: int, t: int, amount: float, channel: str | None = None, mule: str | None = None
    ) -> None:
        """A fraudulent transfer from the victim's usual account to a mule account of the ring."""
        amount = round(min(amount, self.w.people.wealth[victim] * 1.5 + 5000), 2)  # people borrow, within reason
        eid = self.w.em.transfer(victim, t, mule or self.rnd.choice(ring.mules), amount, channel)
        if eid:
            e = self._eng(ring, victim)
            e.loss += amount
            e.transfer_ids.append(eid)
            e.first_loss = t if e.first_loss is None else min(e.first_loss, t)

    def line(self, ring: _Ring, k: int = 0) -> str:
        """The ring's k-th line, or a random one."""
        return ring.lines[k % len(ring.lines)] if k >= 0 else self.rnd.choice(ring.lines)

    def app(self, victim: int) -> str:
        """A remote channel; the elderly go to the counter more."""
        if self.w.people.age[victim] == ELDER and self.rnd.random() < 0.45:
            return self.rnd.choice(("counter", "atm"))
        return self.rnd.choice(("mobile_app", "mobile_app", "online_bank", "third_party"))


Script = Callable[[_Fraud, _Ring, int, int], None]


def _u(f: _Fraud, lo: float, hi: float) -> float:
    return f.rnd.uniform(lo, hi)


def _mins(f: _Fraud, lo: float, hi: float) -> int:
    return int(f.rnd.uniform(lo, hi) * MIN)


def _safe_account(f: _Fraud, ring: _Ring, v: int, t: int) -> None:
    """Fake bank security: savings moved to a "safe account" during the long call or right after it."""
    dur = _u(f, 900, 3600)
    end = f.call(ring, f.line(ring, -1), v, t, dur)
    total = f.w.people.wealth[v] * _u(f, 0.3, 0.9)
    mule = f.rnd.choice(ring.mules)
    if f.w.people.age[v] == ELDER and f.rnd.random() < 0.4:
        f.pay(ring, v, end + _mins(f, 15, 90), total, "counter", mule)
        return
    parts = f.rnd.randint(1, 4)
    for k in sorted(_u(f, 0.3, 0.97) for _ in range(parts)):
        f.pay(
            ring,
            v,
            t + int(dur * k * SEC),
            min(50_000.0, total / parts),
            f.rnd.choice(("mobile_app", "online_bank")),
            mule,
        )


def _customs_parcel(f: _Fraud, ring: _Ring, v: int, t: int) -> None:
    """A parcel with contraband, handed on to fake police, then a "bail" or asset check paid later."""
    end = f.call(ring, f.line(ring, 0), v, t, _u(f, 150, 480))
    end = f.call(ring, f.line(ring, 1), v, end + _mins(f, 0.2, 3), _u(f, 1200, 3600))
    if f.rnd.random() < 0.5:
        end = f.callback(ring, f.line(ring, 1), v, end + _mins(f, 600, 1200), _u(f, 600, 1800))
    f.pay(ring, v, end + _mins(f, 10, 1200), f.rnd.choice((1, 2, 3, 5, 8)) * 10_000.0, f.app(v))
    if f.rnd.random() < 0.45:
        f.pay(ring, v, end + _mins(f, 1440, 2400), f.rnd.choice((2, 3, 5, 10)) * 10_000.0, f.app(v))


def _grandchild_emergency(f: _Fraud, ring: _Ring, v: int, t: int) -> None:
    """A "grandchild" in trouble calls from a new number; the elderly victim pays within minutes."""
    end = f.call(ring, f.line(ring, -1), v, t, _u(f, 150, 600))
    amount = f.rnd.choice((5000, 8000, 10_000, 20_000, 30_000))
    f.pay(ring, v, end + _mins(f, 5, 40), amount, f.app(v))
    if f.rnd.random() < 0.4:
        end = f.call(ring, f.line(ring, -1), v, end + _mins(f, 60, 180), _u(f, 100, 400))
        f.pay(ring, v, end + _mins(f, 5, 30), amount * 1.5, f.app(v))


def _pig_butchering(f: _Fraud, ring: _Ring, v: int, t: int) -> None:
    """A weeks-long "friend" with few long evening calls; growing deposits to several mules over days."""
    line = f.line(ring, -1)
    amount = float(f.rnd.choice((1000, 2000, 3000, 5000)))
    when = t
    for k in range(f.rnd.randint(3, 6)):
        if k == 0 or f.rnd.random() < 0.4:
            f.call(ring, line, v, when, _u(f, 900, 3600))
        f.pay(
            ring,
            v,
            when + _mins(f, 60, 240),
            amount,
            f.rnd.choice(("mobile_app", "online_bank", "third_party")),
            ring.mules[k % len(ring.mules)],
        )
        amount = round(amount * _u(f, 1.8, 3.2), -2)
        when += _mins(f, 8 * 60, 30 * 60)


def _fake_loan_fee(f: _Fraud, ring: _Ring, v: int, t: int) -> None:
    """A "loan" that needs a fee, then insurance, then an unfreezing charge, each after a short call."""
    end = f.call(ring, f.line(ring, -1), v, t, _u(f, 240, 720))
    fee = f.rnd.choice((500.0, 800.0, 1200.0, 2000.0))
    for k in range(f.rnd.randint(3, 5)):
        if k:
            end = f.call(ring, f.line(ring, -1), v, end + _mins(f, 60, 360), _u(f, 60, 200))
        f.pay(ring, v, end + _mins(f, 3, 30), fee, f.rnd.choice(("mobile_app", "third_party")))
        fee = round(fee * _u(f, 1.5, 2.5), -1)


def _rebate_task(f: _Fraud, ring: _Ring, v: int, t: int) -> None:
    """Paid "tasks": a recruiting call, a tiny deposit, then escalating deposits over a day or two."""
    end = f.call(ring, f.line(ring, -1), v, t, _u(f, 150, 420))
    when = end + _mins(f, 60, 180)
    for amount in (f.rnd.choice((100, 200, 300, 500)), _u(f, 1000, 3000), _u(f, 5000, 20_000), _u(f, 20_000, 80_000)):
        f.pay(ring, v, when, amount, f.rnd.choice(("mobile_app", "third_party")))
        if f.rnd.random() < 0.3:
            f.call(ring, f.line(ring, -1), v, when + _mins(f, 10, 120), _u(f, 40, 300))
        when += _mins(f, 120, 1000)
        if f.rnd.random() < 0.25:
            break


def _ticket_refund(f: _Fraud, ring: _Ring, v: int, t: int) -> None:
    """A "cancelled flight": the victim "verifies" a refund by paying during the call."""
    dur = _u(f, 400, 1500)
    f.call(ring, f.line(ring, -1), v, t, dur)
    for k in sorted(_u(f, 0.4, 0.95) for _ in range(f.rnd.randint(1, 3))):
        f.pay(ring, v, t + int(dur * k * SEC), _u(f, 2000, 30_000), "mobile_app")


def _sextortion(f: _Fraud, ring: _Ring, v: int, t: int) -> None:
    """A short lure call, then a threat hours later; payment soon after the threat."""
    f.call(ring, f.line(ring, 0), v, t, _u(f, 20, 90))
    end = f.call(ring, f.line(ring, 1), v, t + _mins(f, 60, 600), _u(f, 130, 420))
    f.pay(ring, v, end + _mins(f, 10, 60), _u(f, 3000, 20_000), f.rnd.choice(("mobile_app", "third_party")))
    if f.rnd.random() < 0.5:
        f.pay(ring, v, end + _mins(f, 1000, 1800), _u(f, 5000, 30_000), "mobile_app")


def _lottery_prize_fee(f: _Fraud, ring: _Ring, v: int, t: int) -> None:
    """ "You won": a tax fee paid at the counter hours later, then a larger "notary" fee after another call."""
    end = f.call(ring, f.line(ring, -1), v, t, _u(f, 200, 600))
    f.pay(ring, v, end + _mins(f, 240, 1400), _u(f, 2000, 10_000), f.rnd.choice(("counter", "atm", "mobile_app")))
    if f.rnd.random() < 0.6:
        end = f.call(ring, f.line(ring, -1), v, end + _mins(f, 1500, 2500), _u(f, 150, 500))
        f.pay(ring, v, end + _mins(f, 30, 300), _u(f, 8000, 30_000), f.rnd.choice(("counter", "atm")))


def _utility_cutoff(f: _Fraud, ring: _Ring, v: int, t: int) -> None:
    """The "power is cut tonight" call: a small arrears payment during or just after the call."""
    dur = _u(f, 125, 320)
    f.call(ring, f.line(ring, -1), v, t, dur)
    f.pay(ring, v, t + int(dur * _u(f, 0.6, 1.6) * SEC), _u(f, 500, 5000), f.app(v))


def _boss_impersonation(f: _Fraud, ring: _Ring, v: int, t: int) -> None:
    """A "new number of your manager": a short call, then a large payment to a "supplier" within hours."""
    end = f.call(ring, f.line(ring, -1), v, t, _u(f, 50, 200))
    f.pay(
        ring,
        v,
        end + _mins(f, 30, 180),
        f.rnd.choice((2, 5, 8, 10, 20)) * 10_000.0,
        f.rnd.choice(("online_bank", "mobile_app")),
    )
    if f.rnd.random() < 0.25:
        f.pay(ring, v, end + _mins(f, 200, 400), f.rnd.choice((3, 5, 10)) * 10_000.0, "online_bank")


def _credit_cleanup(f: _Fraud, ring: _Ring, v: int, t: int) -> None:
    """The "close your student loan account or lose your credit score" call: borrow from apps and pass it on."""
    dur = _u(f, 900, 2400)
    f.call(ring, f.line(ring, -1), v, t, dur)
    when = t + int(dur * _u(f, 0.5, 0.9) * SEC)
    for _ in range(f.rnd.randint(2, 4)):
        f.pay(ring, v, when, _u(f, 5000, 30_000), "mobile_app")
        when += _mins(f, 8, 50)


@dataclass(frozen=True)
class _Scenario:
    name: str
    weight: float
    ages: tuple[float, float, float]  # victim age-group weights: young, mid, elderly
    kinds: tuple[tuple[str, float], ...]
    script: Script
    lines: tuple[int, int]


_MOBILE_MOST = (("mobile", 0.75), ("voip", 0.1), ("virtual", 0.1), ("overseas", 0.05))
SCENARIO_LIST: tuple[_Scenario, ...] = (
    _Scenario(
        "safe_account",
        1.2,
        (0.15, 0.45, 0.40),
        (("mobile", 0.65), ("voip", 0.2), ("virtual", 0.15)),
        _safe_account,
        (2, 4),
    ),
    _Scenario(
        "customs_parcel",
        1.0,
        (0.15, 0.40, 0.45),
        (("mobile", 0.7), ("voip", 0.15), ("overseas", 0.15)),
        _customs_parcel,
        (2, 3),
    ),
    _Scenario(
        "grandchild_emergency",
        1.0,
        (0.0, 0.12, 0.88),
        (("mobile", 0.92), ("virtual", 0.08)),
        _grandchild_emergency,
        (2, 5),
    ),
    _Scenario(
        "crypto_pig_butchering",
        0.8,
        (0.30, 0.60, 0.10),
        (("mobile", 0.7), ("overseas", 0.2), ("voip", 0.1)),
        _pig_butchering,
        (1, 3),
    ),
    _Scenario(
        "fake_loan_fee",
        1.0,
        (0.55, 0.40, 0.05),
        (("mobile", 0.7), ("virtual", 0.25), ("voip", 0.05)),
        _fake_loan_fee,
        (2, 4),
    ),
    _Scenario("rebate_task", 1.0, (0.45, 0.45, 0.10), (("mobile", 0.8), ("voip", 0.2)), _rebate_task, (1, 3)),
    _Scenario(
        "ticket_refund",
        0.7,
        (0.50, 0.40, 0.10),
        (("virtual", 0.25), ("voip", 0.2), ("mobile", 0.55)),
        _ticket_refund,
        (2, 4),
    ),
    _Scenario(
        "sextortion", 0.5, (0.70, 0.30, 0.0), (("overseas", 0.25), ("mobile", 0.7), ("voip", 0.05)), _sextortion, (2, 3)
    ),
    _Scenario(
        "lottery_prize_fee",
        0.6,
        (0.05, 0.30, 0.65),
        (("mobile", 0.7), ("virtual", 0.2), ("overseas", 0.1)),
        _lottery_prize_fee,
        (1, 3),
    ),
    _Scenario("utility_cutoff", 0.7, (0.10, 0.45, 0.45), _MOBILE_MOST, _utility_cutoff, (2, 4)),
    _Scenario(
        "boss_impersonation", 0.6, (0.25, 0.75, 0.0), (("mobile", 0.95), ("virtual", 0.05)), _boss_impersonation, (1, 3)
    ),
    _Scenario(
        "credit_cleanup",
        0.7,
        (0.80, 0.20, 0.0),
        (("mobile", 0.65), ("virtual", 0.2), ("voip", 0.15)),
        _credit_cleanup,
        (2, 4),
    ),
)
SCENARIOS: tuple[str, ...] = tuple(s.name for s in SCENARIO_LIST)
_SPAN_MS = {
    "crypto_pig_butchering": 3 * DAY,
    "rebate_task": 2 * DAY,
    "lottery_prize_fee": 2 * DAY,
    "customs_parcel": 1 * DAY,
}


def _scenario_list(cfg: OtherConfig) -> tuple[_Scenario, ...]:
    if cfg.scenarios is None:
        return SCENARIO_LIST
    return tuple(s for s in SCENARIO_LIST if s.name in cfg.scenarios)


def _make_rings(w: _World) -> list[_Ring]:
    rnd = w.rnd
    expected = w.cfg.victims_per_10k_per_day * w.cfg.residents * w.cfg.days / 10_000
    total_weight = sum(s.weight for s in _scenario_list(w.cfg))
    rings = []
    for s in _scenario_list(w.cfg):
        share = expected * s.weight / total_weight
        kinds, weights = zip(*s.kinds, strict=True)
        for r in range(1 + int(share > 8) + int(share > 25)):
            # a ring's first line is nearly always a plain (bought or stolen) mobile SIM
            lines = [
                w.numbers.issue("mobile" if k == 0 and rnd.random() < 0.8 else rnd.choices(kinds, weights)[0])
                for k in range(rnd.randint(*s.lines))
            ]
            mules = [w.accounts.new() for _ in range(rnd.randint(2, 7))]
            rings.append(_Ring(f"{s.name}-{r}", s.name, lines, mules))
    return rings


def _victim(w: _World, ages: tuple[float, float, float], taken: set[int]) -> int:
    for _ in range(50):
        group = w.rnd.choices((YOUNG, MID, ELDER), ages)[0]
        pool = w.people.by_age[group]
        if pool:
            v = w.rnd.choice(pool)
            if v not in taken:
                taken.add(v)
                return v
    return w.rnd.randrange(w.cfg.residents)


def _run_scripts(w: _World, f: _Fraud, rings: list[_Ring]) -> dict[str, int]:
    """Work the planned victims through their ring's script; returns victims started per scenario."""
    rnd = w.rnd
    by_name = {s.name: s for s in SCENARIO_LIST}
    expected = w.cfg.victims_per_10k_per_day * w.cfg.residents * w.cfg.days / 10_000
    total_weight = sum(s.weight for s in _scenario_list(w.cfg))
    taken: set[int] = set()
    started: dict[str, int] = {}
    window = w.em.end_ms - w.cfg.start_ms
    for ring in rings:
        s = by_name[ring.scenario]
        n_rings = sum(1 for r in rings if r.scenario == s.name)
        for _ in range(int(w.nrng.poisson(expected * s.weight / total_weight / n_rings))):
            v = _victim(w, s.ages, taken)
            # long scripts start early enough that some of their payments fall inside the window
            latest = max(HOUR, window - min(_SPAN_MS.get(s.name, 2 * HOUR), window // 2))
            day = min(len(w.day_starts) - 1, rnd.randrange(max(1, latest)) // DAY)
            t = w.at(day, "evening" if s.name in ("crypto_pig_butchering", "sextortion") else "ring")
            if rnd.random() < 0.4:  # a sweep call or two the victim missed before the one that worked
                for _k in range(rnd.randint(1, 2)):
                    f.call(ring, f.line(ring, -1), v, t - rnd.randint(20, 2000) * MIN, 0, answered=False)
            s.script(f, ring, v, t)
            started[s.name] = started.get(s.name, 0) + 1
    return started


def _sweeps(w: _World, f: _Fraud, rings: list[_Ring]) -> None:
    """Ring lines dial through lists in bursts: mostly missed or hung up, some talk 120 s+ and never pay."""
    rnd, p = w.rnd, w.people
    by_name = {s.name: s for s in SCENARIO_LIST}
    answer = {"mobile": 0.45, "virtual": 0.3, "voip": 0.28, "overseas": 0.15, "landline": 0.4, "unknown": 0.2}
    left = w.count(w.cfg.sweep_calls_per_10k_per_day)
    while left > 0:
        ring = rnd.choice(rings)
        line = rnd.choice(ring.lines)
        kind = w.numbers.kind[line]
        t = w.anytime("ring")
        burst = min(left, rnd.randint(3, 40))  # one sitting at one line, call after call
        left -= burst
        for _ in range(burst):
            v = _victim(w, by_name[ring.scenario].ages, set())
            answered = rnd.random() < answer[kind] * (1.2 if p.age[v] == ELDER else 1.0)
            if answered and rnd.random() < w.cfg.sweep_hook_share:
                dur = rnd.uniform(120, 900)  # talked, grew suspicious, hung up: a case with no loss
                if rnd.random() < 0.3:  # the ring tries again later; the victim lets it ring
                    f.call(ring, line, v, t + rnd.randint(30, 1440) * MIN, 0, answered=False)
            else:
                dur = min(110.0, rnd.lognormvariate(math.log(12), 0.9)) if answered else 0.0
            t = f.call(ring, line, v, t, dur, answered) + rnd.randint(5, 150) * SEC


def _cases(f: _Fraud) -> list[dict[str, Any]]:
    """A case per victim and ring that paid or talked 120 s+; contacts of only short calls are no case."""
    cases = []
    for (victim, _ring_id), e in sorted(f.engagements.items()):
        if not (e.engaged or e.transfer_ids) or (e.first_contact is None and e.first_loss is None):
            continue
        first_contact = e.first_contact if e.first_contact is not None else e.first_loss
        assert first_contact is not None
        cases.append(
            {
                "schema": "case.v1",
                "case_id": "",
                "scenario": e.ring.scenario,
                "victim": f.w.people.phone[victim],
                "fraud_numbers": sorted(e.numbers),
                "first_contact_ms": first_contact,
                "first_loss_ms": e.first_loss,
                "event_ids": e.call_ids + e.transfer_ids,
                "ring": e.ring.ring_id,
                "loss_amount": round(e.loss, 2),
            }
        )
    cases.sort(key=lambda c: (c["first_contact_ms"], c["victim"]))
    for k, c in enumerate(cases):
        c["case_id"] = f"other-{k:05d}"
    return cases


# ----------------------------------------------------------------------------------------------------------
# Putting it together


def _responders(cfg: OtherConfig, rnd: random.Random, box: _Box) -> list[dict[str, Any]]:
    out = []
    for k in range(max(2, cfg.residents // 500)):
        kind = "police" if rnd.random() < 0.4 else "grid_worker"
        dlat, dlon = rnd.choice(box.districts)
        unit = f"station-{rnd.randrange(len(box.districts)):02d}" if kind == "police" else f"grid-{k // 3:03d}"
        out.append(
            {
                "responder_id": f"r-{k:04d}",
                "kind": kind,
                "unit": unit,
                "lat": round(_clip(rnd.gauss(dlat, box.half * 0.3), box.lat0, box.half), 5),
                "lon": round(_clip(rnd.gauss(dlon, box.half * 0.3), box.lon0, box.half), 5),
                "status": rnd.choices(("available", "busy", "off_duty"), (0.75, 0.15, 0.1))[0],
            }
        )
    return out


def _file_order(
    cfg: OtherConfig, rnd: random.Random, signal_rnd: random.Random, events: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Events sorted by time, a signal before its call; a few written late and a few repeated."""
    rank = {"call_start.v1": 0, "call.v1": 1, "transfer.v1": 2}
    keyed = []
    for k, ev in enumerate(events):
        r = signal_rnd if rank[ev["schema"]] == 0 else rnd  # calls and transfers keep their draws at any signalling
        late = r.randint(1, cfg.max_late_s * SEC) if r.random() < cfg.late_share else 0
        keyed.append((ev["ts_ms"] + late, rank[ev["schema"]], k, ev))
        if r.random() < cfg.duplicate_share:
            keyed.append((ev["ts_ms"] + r.randint(1, 120 * SEC), 3, k, ev))
    keyed.sort(key=lambda x: (x[0], x[1], x[2]))
    return [x[3] for x in keyed]


def simulate_other(config: OtherConfig) -> OtherCity:
    """Generate one city of the other generator: legitimate life, look-alikes, fraud rings and ground truth."""
    cfg = config
    rnd = random.Random(cfg.seed * 7919 + 17)
    nrng = np.random.default_rng([cfg.seed, 2718])
    numbers, accounts = _Numbers(rnd), _Accounts(rnd)
    box = _city_box(cfg, rnd)
    shared = {
        "utility": [accounts.new() for _ in range(6)],
        "shop": [accounts.new() for _ in range(max(20, cfg.residents // 100))],
    }
    people = _build_people(cfg, rnd, nrng, numbers, accounts, box, shared)
    em = _Emitter(cfg, rnd, numbers, people, box)
    n_days = max(1, math.ceil(cfg.days))
    local0 = (cfg.start_ms + cfg.utc_offset_h * HOUR) // DAY  # days since epoch, local calendar
    w = _World(
        cfg,
        rnd,
        nrng,
        numbers,
        accounts,
        people,
        em,
        day_starts=[cfg.start_ms + d * DAY for d in range(n_days)],
        weekdays=[(local0 + d + 3) % 7 for d in range(n_days)],
    )  # 1970-01-01 was a Thursday (3)
    _social_calls(w)
    _bulk_callers(w)
    _new_contacts(w)
    _big_purchases(w)
    _family_emergencies(w)
    _shops_and_landlords(w, [accounts.new() for _ in range(max(10, cfg.residents // 400))])
    _traders(w)
    _routine_transfers(w)
    fraud = _Fraud(w)
    rings = _make_rings(w)
    started = _run_scripts(w, fraud, rings)
    _sweeps(w, fraud, rings)
    cases = _cases(fraud)
    events = _file_order(cfg, rnd, em.signal_rnd, em.events)
    per_scenario: dict[str, dict[str, int]] = {}
    for c in cases:
        row = per_scenario.setdefault(c["scenario"], {"cases": 0, "cases_with_loss": 0})
        row["cases"] += 1
        row["cases_with_loss"] += c["first_loss_ms"] is not None
    meta = {
        "residents": cfg.residents,
        "days": cfg.days,
        "seed": cfg.seed,
        "generator": "other",
        "start_ms": cfg.start_ms,
        "end_ms": em.end_ms,
        "config": asdict(cfg),
        "events": len(events),
        "calls": sum(e["schema"] == "call.v1" for e in events),
        "call_starts": sum(e["schema"] == "call_start.v1" for e in events),
        "transfers": sum(e["schema"] == "transfer.v1" for e in events),
        "cases": len(cases),
        "cases_with_loss": sum(c["first_loss_ms"] is not None for c in cases),
        "per_scenario": dict(sorted(per_scenario.items())),
        "scripts_started": dict(sorted(started.items())),
        "lookalikes": dict(sorted(w.lookalikes.items())),
        "rings": len(rings),
        "box": {"lat": round(box.lat0, 4), "lon": round(box.lon0, 4), "half_deg": round(box.half, 4)},
    }
    lines = sorted({line for ring in rings for line in ring.lines})
    return OtherCity(events, cases, _responders(cfg, rnd, box), meta, lines)


def _write_jsonl(path: Path, rows: Sequence[dict[str, Any]]) -> None:
    with path.open("wb") as fh:
        for row in rows:
            fh.write(orjson.dumps(row))
            fh.write(b"\n")


def write_other_city(city: OtherCity, out_dir: Path | str) -> dict[str, Path]:
    """Write events.jsonl, cases.jsonl, responders.jsonl and city.json into ``out_dir``; returns their paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {name: out / f"{name}.jsonl" for name in ("events", "cases", "responders")}
    _write_jsonl(paths["events"], city.events)
    _write_jsonl(paths["cases"], city.cases)
    _write_jsonl(paths["responders"], city.responders)
    paths["city"] = out / "city.json"
    paths["city"].write_bytes(orjson.dumps(city.meta, option=orjson.OPT_INDENT_2))
    return paths
