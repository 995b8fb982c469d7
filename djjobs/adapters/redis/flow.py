"""The Redis adapter's flow-control storage calls (djjobs/uniqueness.py, concurrency.py,
ratelimits.py): rate windows, and the inspection of held uniqueness keys, concurrency keys
and blocked jobs. The steps that change a job's state with them are in the adapter's
scripts (lib/unique_*.lua, lib/slots.lua); these read, or change only flow-control keys."""
from __future__ import annotations

from ..base import ConcurrencyUse, RateUse, UniqueHold, decode_or_none

SCAN_LIMIT = 200_000


class RedisFlow:
    """Mixed into RedisAdapter (it uses ``run``, ``client``, ``keys``, ``clock``, ``get``)."""

    def _blocked_lengths(self) -> dict[str, int]:
        """Blocked jobs per concurrency key in use."""
        keys = [k.decode() for k in self.client.hkeys(self.keys.ckeys)]
        if not keys:
            return {}
        with self.client.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.llen(self.keys.blocked(key))
            return dict(zip(keys, pipe.execute()))

    def _blocked_page(self, queue: str | None, job: str | None, search: str | None, offset: int,
                      per_page: int) -> tuple[int, list]:
        """Blocked jobs, key by key in key order and FIFO within a key (at most SCAN_LIMIT
        looked at), filtered here: the admin's listing, not a hot path."""
        rows, needle = [], (search or "").encode().lower()
        for key in sorted(self._blocked_lengths()):
            ids = self.client.lrange(self.keys.blocked(key), 0, SCAN_LIMIT - len(rows))
            payloads = self.client.hmget(self.keys.payloads, ids) if ids else []
            for member, raw in zip(ids, payloads):
                env = decode_or_none(raw) if raw else None
                if raw is None or (queue and (env is None or env.queue != queue)) or \
                        (job and (env is None or env.job != job)) or (needle and needle not in member.lower()
                                                                      and needle not in raw.lower()):
                    continue
                rows.append((member, "", raw))
        return len(rows), rows[offset:offset + per_page]

    def take_rate(self, key: str, limit: int, period: float, member: str) -> float:
        wait = self.run("rate", key, limit, repr(period), repr(self.clock()), member,
                        keys=[self.keys.rate(key), self.keys.rates])
        return max(0.0, float(wait))

    def rate_uses(self, limit: int = 1000) -> list[RateUse]:
        """Keys in P:rates with starts in their window now; keys whose window expired are
        dropped from P:rates."""
        now = self.clock()
        specs = []
        for key, spec in sorted(self.client.hgetall(self.keys.rates).items()):
            lim, _, period = spec.decode().partition("|")
            specs.append((key.decode(), int(lim), float(period)))
        with self.client.pipeline(transaction=False) as pipe:
            for key, _, period in specs:
                pipe.zcount(self.keys.rate(key), f"({now - period!r}", "+inf")
            used = pipe.execute() if specs else []
        idle = [key for (key, _, _), n in zip(specs, used) if not n]
        if idle:
            self.client.hdel(self.keys.rates, *idle)
        return [RateUse(key, lim, period, n) for (key, lim, period), n in zip(specs, used) if n][:limit]

    def concurrency_uses(self, limit: int = 1000) -> list[ConcurrencyUse]:
        specs = sorted((k.decode(), int(v)) for k, v in self.client.hgetall(self.keys.ckeys).items())[:limit]
        if not specs:
            return []
        with self.client.pipeline(transaction=False) as pipe:
            for key, _ in specs:
                pipe.smembers(self.keys.slots(key))
                pipe.llen(self.keys.blocked(key))
            found = pipe.execute()
        uses = []
        for i, (key, lim) in enumerate(specs):
            members = sorted(m.decode() for m in found[2 * i])
            held = [r.job_id for r in map(self.get, members) if r is not None and r.state in ("ready", "running")]
            if held or found[2 * i + 1]:
                uses.append(ConcurrencyUse(key, lim, held, found[2 * i + 1]))
        return uses

    def _unique_keys(self) -> list[str]:
        return [self.keys.unique, self.keys.payloads, self.keys.dead, self.keys.leases, self.keys.cancelled]

    def unique_holds(self, limit: int = 1000) -> list[UniqueHold]:
        """HSCAN of P:unique in steps of 500 (dropping the entries no longer held), at most
        SCAN_LIMIT entries looked at."""
        holds, cursor, seen = [], "0", 0
        while len(holds) < limit and seen < SCAN_LIMIT:
            out = self.run("unique", "holds", repr(self.clock()), cursor, 500, keys=self._unique_keys())
            cursor, seen = out[0].decode(), seen + 500
            for i in range(1, len(out), 4):
                holds.append(UniqueHold(out[i].decode(), out[i + 1].decode(), float(out[i + 2]), out[i + 3].decode()))
            if cursor == "0":
                break
        return sorted(holds, key=lambda h: h.key)[:limit]

    def release_unique(self, key: str) -> bool:
        return bool(self.run("unique", "free", key, repr(self.clock()), keys=self._unique_keys()))
