"""Flow control on the database adapter: unique jobs, concurrency slots and rate windows,
as SQL run on the adapter's cursor inside the caller's transaction (the adapter opens it).

Unique jobs: the key is a column under a partial unique index (rows with a key only, so
other jobs pay nothing). An enqueue first frees the key from a row that no longer holds it
(finished, dead, expired, or started with ``until`` "start"), then inserts with ``ON
CONFLICT DO NOTHING``: two concurrent enqueues cannot both store, and a rolled-back enqueue
leaves nothing behind, since the key lives in the job's own row.

Concurrency limits: a key's slots are its rows in state ready or running, so a slot is
derived from the job's own state: it cannot be let go twice, nor stay taken by a job that
is gone. Every step that admits, blocks or frees one of a key's jobs first locks the key's
row in ``djjobs_concurrencykey`` (keys in sorted order), so those steps happen one at a time
per key and the count they read is exact.

Rate limits: a key's window (the start times) is a row of ``djjobs_ratewindow``, locked by
the upsert that reads it.
"""
from __future__ import annotations

from typing import Iterable

import orjson
from django.db import transaction

from ...errors import EnqueueError
from ..base import ConcurrencyUse, RateUse, UniqueHold

#: ``COLUMNS`` of the adapter, then these.
FLOW_COLUMNS = "unique_key, unique_expires, unique_start, concurrency_key, concurrency_limit"
FLOW_FIELDS = 5
UNIQUE_STALE = ("UPDATE djjobs_job SET unique_key = NULL WHERE unique_key = %s AND (unique_expires <= %s "
                "OR state NOT IN ('ready', 'scheduled', 'retry', 'running', 'blocked') "
                "OR (state = 'running' AND unique_start))")
UNIQUE_HELD = ("unique_key IS NOT NULL AND unique_expires > %s AND (state IN ('ready', 'scheduled', 'retry', "
               "'blocked') OR (state = 'running' AND NOT unique_start))")
UNIQUE_ATTEMPTS = 5
LOCK_KEY = ("INSERT INTO djjobs_concurrencykey (name, concurrency_limit) VALUES (%s, %s) ON CONFLICT (name) "
            "DO UPDATE SET concurrency_limit = excluded.concurrency_limit")
HOLDERS = "SELECT count(*) FROM djjobs_job WHERE concurrency_key = %s AND state IN ('ready', 'running')"
ANY_BLOCKED = "SELECT 1 FROM djjobs_job WHERE concurrency_key = %s AND state = 'blocked' LIMIT 1"
UNBLOCK = ("UPDATE djjobs_job SET state = 'ready', position = %s, updated_at = %s WHERE id IN (SELECT id FROM "
           "djjobs_job WHERE concurrency_key = %s AND state = 'blocked' ORDER BY position, id LIMIT %s)")
REPAIR_KEYS = 200
PRUNE = 1000  # idle rate windows deleted a pass


def insert_sql(columns: str, fields: int) -> str:
    """One job row with its flow-control columns; a unique key already held inserts nothing."""
    return (f"INSERT INTO djjobs_job ({columns}, {FLOW_COLUMNS}) VALUES ({', '.join(['%s'] * (fields + FLOW_FIELDS))}) "
            "ON CONFLICT (unique_key) WHERE unique_key IS NOT NULL DO NOTHING")


def flow_values(lock, slot) -> list:
    return [lock.key if lock else None, lock.expires if lock else None, bool(lock and lock.until == "start"),
            slot[0] if slot else None, slot[1] if slot else None]


def lock_keys(cursor, slots: Iterable[tuple[str, int]]) -> None:
    """Lock the rows of these concurrency keys, in key order (two steps locking the same
    keys never wait for each other in opposite orders)."""
    for key, limit in sorted(set(slots)):
        cursor.execute(LOCK_KEY, [key, limit])


def fits(cursor, key: str, limit: int) -> bool:
    """Whether a job of ``key`` becoming ready takes a slot now (its key locked): a slot is
    free and no job of the key waits before it."""
    cursor.execute(ANY_BLOCKED, [key])
    if cursor.fetchone() is not None:
        return False
    cursor.execute(HOLDERS, [key])
    return cursor.fetchone()[0] < limit


def unblock(cursor, key: str, limit: int, now: float, position: int) -> int:
    """Make the key's oldest blocked jobs ready, as many as slots are free (key locked)."""
    cursor.execute(HOLDERS, [key])
    free = limit - cursor.fetchone()[0]
    if free <= 0:
        return 0
    cursor.execute(UNBLOCK, [position, now, key, free])
    return cursor.rowcount


def insert_single(cursor, sql: str, row: list, lock, slot, now: float, replaced: list | None = None) -> str | None:
    """Store one job with flow control (its key locked if it has a concurrency key): blocked
    when it would be ready and no slot is free; not stored when its uniqueness key is held
    (the holder's id is returned). Each try inserts (for "replace", after deleting a holder
    that has not started or taking the key from a running one); on a conflict it frees the
    key from a row that no longer holds it and tries again, and a holder that is gone by the
    time it is read tries again too. The common case, a free key, is one statement; without
    a concurrency key or "replace" no step needs a transaction around it (each is atomic,
    and freeing a key its row no longer holds changes nothing that matters). The ids of the
    holders "replace" deleted go to ``replaced``: the caller settles them, as deleted, for
    their dependants and batch (waits.py, batches.py)."""
    if slot is not None and row[4] == "ready" and not fits(cursor, *slot):
        row = [*row[:4], "blocked", *row[5:]]
    if lock is None:
        cursor.execute(sql, row)
        return None
    key = lock.key
    for _ in range(UNIQUE_ATTEMPTS):
        if lock.conflict == "replace":
            cursor.execute("DELETE FROM djjobs_job WHERE unique_key = %s AND state IN ('ready', 'scheduled', "
                           "'retry', 'blocked') RETURNING concurrency_key, concurrency_limit, job_id", [key])
            for *freed, job_id in cursor.fetchall():
                if replaced is not None:
                    replaced.append(job_id)
                if freed[0] is not None:
                    lock_keys(cursor, [freed])
                    unblock(cursor, freed[0], freed[1], now, int(now * 1_000_000))
            cursor.execute("UPDATE djjobs_job SET unique_key = NULL WHERE unique_key = %s AND state = 'running'", [key])
        cursor.execute(sql, row)
        if cursor.rowcount == 1:  # stored (0: the key is held)
            return None
        cursor.execute(UNIQUE_STALE, [key, now])
        if cursor.rowcount or lock.conflict == "replace":
            continue  # freed from a row that no longer held it, or (replace) stored meanwhile: again
        cursor.execute("SELECT job_id FROM djjobs_job WHERE unique_key = %s", [key])
        found = cursor.fetchone()
        if found is not None:
            return found[0]
    raise EnqueueError(f"Could not store job {row[0]}: its uniqueness key {key!r} changed hands "
                       f"{UNIQUE_ATTEMPTS} times while it was being stored; enqueue it again.")


def admit_rows(cursor, rows: list[tuple[int, str, int]], now: float, position: int) -> None:
    """Rows just made ready (promotion, retry by hand) that have a concurrency key, given as
    (row id, key, limit) in the order they became due: each key locked, those that fit keep
    state ready, the others are blocked behind the key's waiting jobs."""
    by_key: dict[tuple[str, int], list[int]] = {}
    for row_id, key, limit in rows:
        by_key.setdefault((key, limit), []).append(row_id)
    lock_keys(cursor, by_key)
    for (key, limit), ids in sorted(by_key.items()):
        cursor.execute(ANY_BLOCKED, [key])
        waiting = cursor.fetchone() is not None
        cursor.execute(f"SELECT count(*) FROM djjobs_job WHERE concurrency_key = %s AND state IN ('ready', 'running') "
                       f"AND id NOT IN ({', '.join(['%s'] * len(ids))})", [key, *ids])
        free = 0 if waiting else max(0, limit - cursor.fetchone()[0])
        over = ids[free:]
        if over:
            cursor.execute(f"UPDATE djjobs_job SET state = 'blocked', position = %s WHERE id IN "
                           f"({', '.join(['%s'] * len(over))})", [position, *over])


def repair(cursor, now: float, position: int) -> int:
    """Keys with blocked jobs admit them into slots freed without an outcome (a row deleted
    by other means): at most REPAIR_KEYS keys a call."""
    cursor.execute("SELECT DISTINCT concurrency_key, concurrency_limit FROM djjobs_job WHERE concurrency_key IS NOT "
                   "NULL AND state = 'blocked' ORDER BY concurrency_key LIMIT %s", [REPAIR_KEYS])
    keys = cursor.fetchall()
    lock_keys(cursor, keys)
    return sum(unblock(cursor, key, limit, now, position) for key, limit in keys)


def take_rate(cursor, key: str, limit: int, period: float, now: float) -> float:
    """The window's upsert locks its row (PostgreSQL: concurrent callers wait for it;
    SQLite: one writer at a time); then it is pruned, counted and written back."""
    cursor.execute("INSERT INTO djjobs_ratewindow (name, rate_limit, period, starts) VALUES (%s, %s, %s, '[]') "
                   "ON CONFLICT (name) DO UPDATE SET rate_limit = excluded.rate_limit, period = excluded.period "
                   "RETURNING starts", [key, limit, period])
    starts = [t for t in orjson.loads(cursor.fetchone()[0]) if t > now - period]
    wait = 0.0
    if len(starts) < limit:
        starts.append(now)
    else:
        wait = sorted(starts)[len(starts) - limit] + period - now
    cursor.execute("UPDATE djjobs_ratewindow SET starts = %s WHERE name = %s", [orjson.dumps(starts).decode(), key])
    return wait


class DatabaseFlow:
    """Mixed into DatabaseAdapter (it uses ``alias``, ``cursor``, ``clock``, ``_storable``):
    rate windows, the inspection of flow-control state, and its pruning."""

    def _prune_flow(self, now: float) -> int:
        """Concurrency keys no job uses any more, and rate windows with no start in their
        period (each key is one row however long it lives: only keys no longer used are
        dropped). Hourly, with the tick claims."""
        with transaction.atomic(using=self.alias), self.cursor() as cursor:
            cursor.execute("DELETE FROM djjobs_concurrencykey WHERE NOT EXISTS (SELECT 1 FROM djjobs_job WHERE "
                           "concurrency_key = djjobs_concurrencykey.name AND state IN ('ready', 'scheduled', 'retry', "
                           "'running', 'blocked', 'dead'))")
            keys = cursor.rowcount
            cursor.execute("SELECT name, period, starts FROM djjobs_ratewindow")
            idle = [name for name, period, starts in cursor.fetchall()
                    if not any(t > now - period for t in orjson.loads(starts))][:PRUNE]
            if idle:
                cursor.execute(f"DELETE FROM djjobs_ratewindow WHERE name IN ({', '.join(['%s'] * len(idle))})", idle)
        return keys + len(idle)

    def take_rate(self, key: str, limit: int, period: float, member: str) -> float:
        with transaction.atomic(using=self.alias), self.cursor() as cursor:
            return take_rate(cursor, key, limit, period, self.clock())

    def rate_uses(self, limit: int = 1000) -> list[RateUse]:
        from ...models import RateWindow
        now, uses = self.clock(), []
        for row in RateWindow.objects.using(self.alias).order_by("name")[:limit * 2]:
            used = sum(1 for t in orjson.loads(row.starts) if t > now - row.period)
            if used:
                uses.append(RateUse(row.name, row.rate_limit, row.period, used))
        return uses[:limit]

    def concurrency_uses(self, limit: int = 1000) -> list[ConcurrencyUse]:
        with self.cursor() as cursor:
            cursor.execute("SELECT concurrency_key, job_id, state, concurrency_limit FROM djjobs_job WHERE concurrency_key "
                           "IS NOT NULL AND state IN ('ready', 'running', 'blocked') ORDER BY concurrency_key, position, id")
            uses: dict[str, ConcurrencyUse] = {}
            for key, job_id, state, lim in cursor.fetchall():
                use = uses.setdefault(key, ConcurrencyUse(key, lim, [], 0))
                if state == "blocked":
                    use.blocked += 1
                else:
                    use.holders.append(job_id)
        return [uses[k] for k in sorted(uses)][:limit]

    def unique_holds(self, limit: int = 1000) -> list[UniqueHold]:
        with self.cursor() as cursor:
            cursor.execute(f"SELECT unique_key, job_id, unique_expires, unique_start FROM djjobs_job "
                           f"WHERE {UNIQUE_HELD} ORDER BY unique_key LIMIT %s", [self.clock(), limit])
            return [UniqueHold(key, job_id, expires, "start" if start else "finish")
                    for key, job_id, expires, start in cursor.fetchall()]

    def release_unique(self, key: str) -> bool:
        if not self._storable(key):
            return False
        with transaction.atomic(using=self.alias), self.cursor() as cursor:
            cursor.execute(f"SELECT 1 FROM djjobs_job WHERE unique_key = %s AND {UNIQUE_HELD}", [key, self.clock()])
            held = cursor.fetchone() is not None
            cursor.execute("UPDATE djjobs_job SET unique_key = NULL WHERE unique_key = %s", [key])
        return held
