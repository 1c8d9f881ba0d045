"""City-scale feature state in seconds: a simulated history's real states, copied under new keys.

Why: a million live keys take hours of replay to reach through a worker, but what a worker's cost depends on
is how many stored states it holds and what they look like. A small city's history is run through the
offline engine (the agents' own steps), each of its states is encoded once, and the encoded records are
repeated under fresh keys (new subscriber numbers, calling numbers and payee accounts) until the tables hold
the asked-for count, in the proportions the city had. The copies keep their windows' clock, so they stay
live while the soak's event time is within a week of the history's end.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

from core.decode import decode_obj
from features import FeatureEngine
from sandbox.simulate import CityConfig, simulate
from streams import encode_state

__all__ = ["FilledState", "fill_states"]

DAY_MS = 86_400_000


@dataclass(frozen=True)
class FilledState:
    """Stored records per table (key to the record's bytes), ready for ``streams.seed_tables``."""

    key_states: dict[str, bytes]
    subscriber_states: dict[str, bytes]

    @property
    def keys(self) -> int:
        return len(self.key_states) + len(self.subscriber_states)


def fill_states(
    n_keys: int, *, end_ms: int, seed: int = 900, subscribers: int = 2000, days: float = 2.0
) -> FilledState:
    """About ``n_keys`` stored states from a ``subscribers`` x ``days`` history ending at ``end_ms``."""
    city = simulate(CityConfig(subscribers=subscribers, days=days, seed=seed, start_ms=end_ms - int(days * DAY_MS)))
    engine = FeatureEngine()
    for _ in engine.run(decode_obj(e) for e in city.events):
        pass
    keyed = [(k, encode_state(s)) for k, s in engine.key_states().items()]
    subs = [(k, encode_state(s)) for k, s in engine.subscribers.items()]
    total = len(keyed) + len(subs)
    want_keyed = round(n_keys * len(keyed) / total) if total else 0
    return FilledState(
        dict(_repeated(keyed, want_keyed)),
        dict(_repeated(subs, n_keys - want_keyed)),
    )


def _repeated(records: list[tuple[str, bytes]], n: int) -> list[tuple[str, bytes]]:
    """``n`` records: the originals, then copies under new keys (``#<copy>`` appended)."""
    out: list[tuple[str, bytes]] = []
    if not records:
        return out
    for copy in itertools.count():
        for key, raw in records:
            if len(out) >= n:
                return out
            # A copy keeps its key's kind (a ``payee:`` key stays one) under a key no event will use.
            out.append((key if copy == 0 else f"{key}#{copy}", raw))
    return out
