"""State the in-process adapters (memory, test, async, inline) keep for the contract's
side stores: django.tasks results and rate-limit windows, each behind its own lock."""
from __future__ import annotations

import threading

import orjson

from .base import RateUse


class LocalResults:
    """``django.tasks`` results kept in this process (the in-memory and inline adapters),
    as JSON bytes like a real store keeps them, until they expire. Expired ones are dropped
    when read, and all of them whenever 10,000 are held (a long-lived process)."""

    def __init__(self, clock):
        self._clock, self._items, self._lock = clock, {}, threading.Lock()

    def save(self, job_id: str, result: dict, ttl: float) -> None:
        data = orjson.dumps(result)
        with self._lock:
            now = self._clock()
            if len(self._items) >= 10_000:
                self._items = {k: v for k, v in self._items.items() if v[0] > now}
            self._items[job_id] = (now + ttl, data)

    def load(self, job_id: str) -> dict | None:
        with self._lock:
            expires, data = self._items.get(job_id, (0.0, b""))
            if expires <= self._clock():
                self._items.pop(job_id, None)
                return None
        return orjson.loads(data)


class LocalRates:
    """Rate-limit windows kept in this process (the in-memory and inline adapters): per
    key, the times of the starts in its window (contract: ``Adapter.take_rate``)."""

    def __init__(self, clock):
        self._clock, self._windows, self._lock = clock, {}, threading.Lock()

    def take(self, key: str, limit: int, period: float) -> float:
        with self._lock:
            now = self._clock()
            starts = [t for t in self._windows.get(key, ((0, 0.0), []))[1] if t > now - period]
            self._windows[key] = ((limit, period), starts)
            if len(starts) < limit:
                starts.append(now)
                return 0.0
            return starts[len(starts) - limit] + period - now

    def uses(self, limit: int) -> list[RateUse]:
        with self._lock:
            now = self._clock()
            uses = [RateUse(key, lim, period, sum(1 for t in starts if t > now - period))
                    for key, ((lim, period), starts) in sorted(self._windows.items())]
        return [u for u in uses if u.used][:limit]
