"""Prerequisites on the database adapter (djjobs/prerequisites.py; the contract in
``adapters/base.py``).

A waiting row has ``prereqs_pending`` (its prerequisites not ended) and one
``djjobs_dependency`` row per such prerequisite; a prerequisite's row has
``has_dependants``. Why it holds under concurrency (PostgreSQL, READ COMMITTED):

- The enqueue marks each prerequisite still going with one UPDATE, which row-locks it;
  the step that ends that prerequisite updates the same row, so one waits for the other.
  If the end came first, the enqueue's UPDATE finds it ended (its state re-read after the
  wait) and counts it ended; if the enqueue came first, the end sees ``has_dependants``
  and settles the dependants in a later statement, whose snapshot includes the enqueue's
  committed dependency rows.
- Settling deletes the prerequisite's dependency rows and decrements each dependant by
  the rows it deleted: a prerequisite that ends twice (at-least-once) deletes nothing the
  second time. The decrement is an UPDATE of the dependant's row, so two prerequisites
  ending at once are applied one after the other, and exactly one sees zero.

SQLite has one writer at a time: the same steps are simply serial.
"""
from __future__ import annotations

from typing import Sequence

import time

from django.db import DatabaseError, OperationalError, transaction

from ...envelope import Envelope
from ...prerequisites import describe, of
from ..base import Claim, concurrency_slot, split_token
from . import flow

GOING = "('ready', 'scheduled', 'retry', 'running', 'blocked', 'waiting')"
MAX_CASCADE = 100_000
DEADLOCK_ATTEMPTS = 5
RETRIED = ("40P01", "40001")  # deadlock detected, serialization failure


def _marks(values: Sequence) -> str:
    return ", ".join(["%s"] * len(values))


class DatabasePrerequisites:
    """Mixed into DatabaseAdapter (it uses ``alias``, ``cursor``, ``clock``, ``_us``, ``_row``,
    ``_finish_sql``, ``_count``, ``_unblock``, ``dialect`` and ``WAIT_INSERT``)."""

    def _store_waiting(self, cursor, items: Sequence[tuple[Envelope, bytes]], now: float) -> None:
        """Store jobs with prerequisites, in the caller's transaction (ordered: a prerequisite
        stored earlier in the same call is seen). Each in a savepoint, tried again when
        PostgreSQL breaks a deadlock by failing it. (The step that settles a waiting job locks
        its prerequisite's row, then the job's; so this one marks its prerequisites one by one,
        a prerequisite before those of them that wait for it: see :func:`_lock_order`.)"""
        for env, raw in items:
            for attempt in range(1, DEADLOCK_ATTEMPTS + 1):
                try:
                    with transaction.atomic(using=self.alias):
                        self._store_one_waiting(cursor, env, raw, now)
                    break
                except (OperationalError, DatabaseError, Exception) as exc:  # (psycopg's own, inside the cursor)
                    state = getattr(exc, "sqlstate", None) or getattr(exc.__cause__, "sqlstate", None)
                    if state not in RETRIED or attempt == DEADLOCK_ATTEMPTS:
                        raise
                    time.sleep(0.001 * attempt)

    def _store_one_waiting(self, cursor, env: Envelope, raw: bytes, now: float) -> None:
        ids, policy = of(env.meta) or ([env.job_id], "dead")
        pending = []
        for parent in self._lock_order(cursor, ids):
            cursor.execute(f"UPDATE djjobs_job SET has_dependants = TRUE WHERE job_id = %s AND state IN {GOING} "
                           "RETURNING job_id", [parent])
            if cursor.fetchone() is not None:
                pending.append(parent)
        cursor.execute(f"SELECT job_id, state FROM djjobs_job WHERE job_id IN ({_marks(ids)}) AND state IN "
                       "('dead', 'cancelled')", ids)
        bad = {job_id: state for job_id, state in cursor.fetchall()}
        declared = [i for i in of(env.meta)[0] if i in bad] if bad else []
        slot = concurrency_slot(env)
        row = self._row(env, raw, now) + flow.flow_values(None, slot) + [None, None]
        if declared and policy != "run":
            if policy == "discard":
                return
            row[4] = "dead"
            row[10] = f"djjobs.errors.PrerequisiteFailed: Prerequisite {declared[0]} {describe(bad[declared[0]])}; " \
                      "this job did not run."
            cursor.execute(self.WAIT_INSERT, row)
            return
        if not pending:
            if slot is not None:
                flow.lock_keys(cursor, [slot])
            flow.insert_single(cursor, self.WAIT_INSERT, row, None, slot, now)
            return
        row[4], row[-2], row[-1] = "waiting", len(pending), policy
        cursor.execute(self.WAIT_INSERT, row)
        cursor.execute("INSERT INTO djjobs_dependency (child_id, parent_id) VALUES "
                       + ", ".join(["(%s, %s)"] * len(pending)), [v for p in pending for v in (env.job_id, p)])

    def _lock_order(self, cursor, ids: list[str]) -> list[str]:
        """``ids`` sorted, except that one waiting for another of them comes after it (the
        order a settling step locks them in); read without locks, so only a hint that makes a
        deadlock rare, not impossible."""
        if len(ids) < 2:
            return list(ids)
        cursor.execute(f"SELECT child_id, parent_id FROM djjobs_dependency WHERE child_id IN ({_marks(ids)}) AND "
                       f"parent_id IN ({_marks(ids)})", [*ids, *ids])
        waits_for: dict[str, set[str]] = {}
        for child, parent in cursor.fetchall():
            waits_for.setdefault(child, set()).add(parent)
        order, left = [], sorted(ids)
        while left:
            free = [i for i in left if not (waits_for.get(i, set()) & set(left))] or left[:1]
            order.append(free[0])
            left.remove(free[0])
        return order

    def _settle(self, cursor, ended: Sequence[tuple[str, str]], now: float) -> None:
        """Jobs that ended (id, how: "" for a success): settle the jobs waiting for them, and
        down the chain those they end badly; then each of them in its batch. Inside the
        caller's transaction."""
        todo, settled = list(ended), []
        for _ in range(MAX_CASCADE):
            if not todo:
                break
            parent, how = todo.pop()
            settled.append((parent, how))
            cursor.execute("DELETE FROM djjobs_dependency WHERE parent_id = %s RETURNING child_id", [parent])
            children = sorted(r[0] for r in cursor.fetchall())
            if not children:
                continue
            cursor.execute(f"UPDATE djjobs_job SET prereqs_pending = prereqs_pending - 1 WHERE job_id IN "
                           f"({_marks(children)}) AND state = 'waiting' RETURNING job_id, prereqs_pending, "
                           "prereq_policy, run_at, concurrency_key, concurrency_limit, id", children)
            for child, left, policy, run_at, key, limit, row_id in cursor.fetchall():
                if how and policy != "run":
                    todo.append((child, self._end_waiting(cursor, child, policy, parent, how, now)))
                elif left <= 0:
                    self._wait_over(cursor, row_id, run_at, key, limit, now)
        self._settle_batches(cursor, settled, now)  # each of them in its batch (batches.py)

    def _end_waiting(self, cursor, job_id: str, policy: str, parent: str, how: str, now: float) -> str:
        if policy == "discard":
            cursor.execute("DELETE FROM djjobs_job WHERE job_id = %s", [job_id])
            return "discarded"
        cursor.execute("UPDATE djjobs_job SET state = 'dead', updated_at = %s, prereqs_pending = NULL, error = %s "
                       "WHERE job_id = %s", [now, f"djjobs.errors.PrerequisiteFailed: Prerequisite {parent} "
                                             f"{describe(how)}; this job did not run.", job_id])
        return "dead"

    def _wait_over(self, cursor, row_id: int, run_at: float | None, key: str | None, limit: int | None,
                   now: float) -> None:
        state = "scheduled" if run_at is not None and run_at > now else "ready"
        cursor.execute("UPDATE djjobs_job SET state = %s, position = %s, updated_at = %s, prereqs_pending = NULL "
                       "WHERE id = %s", [state, self._us(now), now, row_id])
        if state == "ready" and key is not None:
            flow.admit_rows(cursor, [(row_id, key, limit)], now, self._us(now))
        if state == "ready":
            self.dialect.notify(cursor, {"*"})

    # --- ends of a job that may have dependants ------------------------------------
    def _complete_with_dependants(self, claims: Sequence[Claim], now: float) -> None:
        """Acknowledge the claims the plain acknowledgement left (their rows have
        ``has_dependants``, or their lease was lost): finish them and settle their dependants
        in one transaction."""
        sql, params = self._finish_sql(claims, now)
        with transaction.atomic(using=self.alias), self.cursor() as cursor:
            cursor.execute(f"{sql} RETURNING job_id", params)
            done = [r[0] for r in cursor.fetchall()]
            if done:
                self._count(cursor, False, len(done), now)
                self._settle(cursor, [(job_id, "") for job_id in done], now)

    def discard(self, claim: Claim) -> None:
        now = self.clock()
        sql, params = self._finish_sql([claim], now)
        slot = concurrency_slot(claim.envelope)
        with transaction.atomic(using=self.alias), self.cursor() as cursor:
            if slot is not None:
                flow.lock_keys(cursor, [slot])
            cursor.execute(sql, params)
            if cursor.rowcount:
                self._count(cursor, False, 1, now)
                self._settle(cursor, [(split_token(claim)[0], "discarded")], now)
                if slot is not None:
                    self._unblock(cursor, [slot], now)
