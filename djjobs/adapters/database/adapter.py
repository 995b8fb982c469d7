"""The database adapter: jobs are rows in Django's own database.

Promises (beyond the contract in ``adapters/base.py``):

- **Transactional enqueue**: ``perform_later`` inside ``transaction.atomic()`` writes
  the job row in that same transaction (on ``DJJOBS["DATABASE"]``), so the job
  exists if and only if the caller's data commits. No ``on_commit`` deferral.
- A claim commits before ``fetch`` returns; no transaction is held while a job runs.
- Every state change of a claimed job is fenced by its lease token, so a worker
  whose lease expired cannot ack, retry or kill a job someone else now runs.
- Unique jobs, concurrency slots and rate windows live in the job rows and two small
  tables (``flow.py`` says how each stays atomic).
- Finished jobs are kept ``FINISHED_RETENTION_SECONDS`` (state ``finished``) and
  pruned by the worker in small batches; dead jobs, and cancelled ones, are capped by
  ``DEAD_MAX_JOBS`` and ``DEAD_MAX_DAYS``.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import time
import uuid
from typing import Iterable, Sequence

import orjson
from django.db import DatabaseError, IntegrityError, connections, transaction

from ...envelope import Envelope
from ...errors import EnqueueError
from ..base import (Adapter, Claim, Counts, JobRecord, Page, QueueInfo, WorkerInfo, concurrency_slot, decode_or_none,
                    fenced_claim, recover_orphans, split_token, unique_lock)
from . import flow
from .batches import DatabaseBatches
from .cancel import DatabaseCancel
from .progress import DatabaseProgress
from .waits import DatabasePrerequisites
from .dialects import dialect_for

ACTIVE = ("ready", "scheduled", "retry", "running", "blocked", "waiting", "dead", "cancelled")
COLUMNS = ("job_id, job_name, queue, priority, state, position, run_at, enqueued_at, updated_at, attempts, error, "
           "payload")
INSERT = f"INSERT INTO djjobs_job ({COLUMNS}) VALUES "
ROW_FIELDS = 12
ROW = "(" + ", ".join(["%s"] * ROW_FIELDS) + ")"
TICK_CLAIM_SECONDS = 8 * 86400
PRUNE_BATCH = 1000
SINGLE_INSERT = flow.insert_sql(COLUMNS, ROW_FIELDS)
PLAIN_INSERT = INSERT + ROW




def _fenced(claims: Sequence[Claim]) -> tuple[str, list]:
    """WHERE clause and parameters for the running jobs of ``claims`` whose lease token
    still matches (a claim whose lease expired and was re-claimed matches nothing)."""
    values = ", ".join(["(%s, %s)"] * len(claims))
    return (f"state = 'running' AND (job_id, lease_token) IN (VALUES {values})",
            [v for c in claims for v in split_token(c)])


def _error_text(env: Envelope | None) -> str:
    return _text_of((env.error if env else None) or {})


def _text_of(error: dict) -> str:
    return f"{error.get('class', '')}: {error.get('message', '')}" if error else ""


def _stored_error(text: str, env: Envelope | None, at: float | None) -> dict | None:
    """The error column as :attr:`JobRecord.error` when the payload does not carry it (it
    does not decode, or was kept as it was because it could not be encoded again)."""
    if not text or (env is not None and _error_text(env) == text):
        return None
    cls, _, message = text.partition(": ")
    return {"class": cls, "message": message, "traceback": "", "failed_at": at}


class DatabaseAdapter(DatabaseProgress, DatabasePrerequisites, DatabaseCancel, DatabaseBatches, flow.DatabaseFlow,
                      Adapter):
    name = "database"
    #: one job row with its flow-control and prerequisite columns (waits.py)
    PLAIN_INSERT = PLAIN_INSERT
    WAIT_INSERT = (f"INSERT INTO djjobs_job ({COLUMNS}, {flow.FLOW_COLUMNS}, prereqs_pending, prereq_policy) VALUES "
                   f"({', '.join(['%s'] * (ROW_FIELDS + flow.FLOW_FIELDS + 2))})")
    transactional_enqueue = True
    durable = True

    def __init__(self, options: dict | None = None):
        super().__init__(options)
        self.alias = self.setting("DATABASE")
        self._dialect = None
        self._ticks_pruned_at = 0.0

    @property
    def dialect(self):
        if self._dialect is None:
            vendor = connections[self.alias].vendor
            # SQLite has no notifications: idle fetchers poll often. PostgreSQL wakes them with
            # NOTIFY, so its poll is only a fallback.
            poll = self.options.get("FETCH_POLL_INTERVAL", 0.05 if vendor == "sqlite" else 1.0)
            self._dialect = dialect_for(vendor, self.alias, float(poll))
        return self._dialect

    def cursor(self):
        """A cursor on this thread's connection to ``DJJOBS["DATABASE"]``, in its current
        transaction. On PostgreSQL it binds parameters server-side (see the dialect)."""
        return self.dialect.cursor(connections[self.alias])

    def _us(self, now: float | None = None) -> int:
        return int((self.clock() if now is None else now) * 1_000_000)

    # --- producer -------------------------------------------------------
    def _row(self, env: Envelope, raw: bytes, now: float) -> list:
        scheduled = env.run_at is not None and env.run_at > now
        return [env.job_id, env.job[:255], env.queue, env.priority, "scheduled" if scheduled else "ready",
                self._us(now), env.run_at, env.enqueued_at, now, env.executions, _error_text(env), raw]

    def enqueue(self, envelope: Envelope) -> str | None:
        return self.enqueue_many([envelope]).get(envelope.job_id)

    def enqueue_many(self, envelopes: Sequence[Envelope]) -> dict[str, str]:
        """One multi-row INSERT per 500 jobs, all in one transaction (the caller's, if any);
        jobs with flow control (a uniqueness or concurrency key) one INSERT each, in that
        same transaction, their concurrency keys locked first (flow.py), and then jobs with
        prerequisites (waits.py)."""
        now = self.clock()
        rows, single, waiting = [], [], []
        members: dict[str, list[str]] = {}  # batch id -> its jobs in this call (batches.py)
        for env in envelopes:
            if env.meta and "batch" in env.meta:
                members.setdefault(env.meta["batch"], []).append(env.job_id)
            if env.meta and "after" in env.meta:
                waiting.append(env)
                continue
            row = self._row(env, self.encode(env), now)
            lock, slot = (unique_lock(env), concurrency_slot(env)) if env.meta else (None, None)
            if lock is None and slot is None:
                rows.append(row)
            else:
                single.append((row + flow.flow_values(lock, slot), lock, slot))
        queues = {env.queue for env in envelopes}
        if not single and not waiting and not members:
            self._insert(rows, queues)
            return {}
        duplicates: dict[str, str] = {}
        # (with prerequisites: after the others, so that one in the same batch is seen: waits.py)
        items = [(env, self.encode(env)) for env in waiting]

        # One unique job (skip/raise) on its own needs no transaction: flow.insert_single
        alone = (not rows and not items and len(single) == 1 and single[0][2] is None
                 and single[0][1].conflict != "replace" and not members)

        def write(_rows, _queues) -> None:
            with contextlib.nullcontext() if alone else transaction.atomic(using=self.alias):
                if rows:
                    self._write(rows, queues)
                with self.cursor() as cursor:
                    flow.lock_keys(cursor, [slot for _, _, slot in single if slot])
                    replaced: list[str] = []
                    for row, lock, slot in single:
                        holder = flow.insert_single(cursor, SINGLE_INSERT, row, lock, slot, now, replaced)
                        if holder is not None:
                            duplicates[row[0]] = holder
                    if replaced:  # holders a "replace" deleted: an end, for their dependants and batch
                        self._settle(cursor, [(job_id, "deleted") for job_id in replaced], now)
                    if items:
                        self._store_waiting(cursor, items, now)
                    if members:
                        self._batch_join(cursor, members, {env.job_id for env, _ in items}, now)
                    self.dialect.notify(cursor, queues)
        self._insert(rows + [row for row, _, _ in single] + [[env.job_id] for env, _ in items], queues, write)
        return duplicates

    def enqueue_raw(self, raw: bytes, queue: str) -> None:
        env = decode_or_none(raw)
        now = self.clock()
        self._insert([[env.job_id if env else uuid.uuid4().hex, env.job if env else "", queue, 0, "ready",
                       self._us(now), None, now, now, 0, "", bytes(raw)]], {queue})

    def _insert(self, rows: list[list], queues: set[str], write=None) -> None:
        """Rows that fit one statement: one INSERT (the notification folded in on PostgreSQL),
        atomic on its own, one round trip, in the caller's transaction if any. More: one
        transaction around several INSERTs. A bulk on PostgreSQL: one COPY (atomic on its
        own, about three times faster than a multi-row INSERT), then the notification.

        Any database error is an EnqueueError (from it) saying that none of the rows was
        stored; in the caller's ``atomic()`` block it propagates like the database error
        would, so the block rolls back."""
        try:
            (write or self._write)(rows, queues)
        except IntegrityError as exc:
            raise EnqueueError(f"Could not store job(s): a job with the same job_id exists ({exc}).") from exc
        except DatabaseError as exc:
            connection = connections[self.alias]
            within = connection.in_atomic_block
            if not within:  # a connection broken by a server restart is replaced at the next enqueue
                connection.close_if_unusable_or_obsolete()
            n = len(rows)
            raise EnqueueError(
                f"Could not store {'the job' if n == 1 else f'{n:,} jobs'} in database {self.alias!r} "
                f"(DJJOBS['DATABASE']): {'it was NOT stored' if n == 1 else 'none of them was stored'}, the "
                "write is all or nothing"
                + ("; inside transaction.atomic() the whole transaction fails with it, your data is not "
                   "committed either" if within else "")
                + ". Check that the database server runs and accepts connections. "
                f"Cause: {type(exc).__name__}: {' '.join(str(exc).split())}") from exc

    def _write(self, rows: list[list], queues: set[str]) -> None:
        if len(rows) > 1 and self.dialect.copies:
            with self.cursor() as cursor:
                self.dialect.copy_rows(cursor, COLUMNS, rows)
                self.dialect.notify(cursor, queues)
            return
        per_statement = max(1, min(1000, (connections[self.alias].features.max_query_params or 999) // ROW_FIELDS))
        single = len(rows) <= per_statement
        with (contextlib.nullcontext() if single else transaction.atomic(using=self.alias)), \
                self.cursor() as cursor:
            for start in range(0, len(rows), per_statement):
                chunk = rows[start:start + per_statement]
                sql = INSERT + ", ".join([ROW] * len(chunk))
                params = [v for row in chunk for v in row]
                if single:
                    sql, params = self.dialect.with_notify(sql, params, queues)
                cursor.execute(sql, params)
            if not single:
                self.dialect.notify(cursor, queues)

    # --- worker ---------------------------------------------------------
    def fetch(self, queues: Sequence[str], limit: int, timeout: float, worker_id: str, *,
              complete: Sequence[Claim] = ()) -> list[Claim]:
        """On PostgreSQL the acknowledgement of ``complete`` and the first claim are one
        statement (data-modifying CTEs): one round trip per worker batch. (Concurrency-limited
        jobs are acknowledged first, each key's blocked jobs admitted in that transaction.)"""
        complete = self._complete_limited(complete)
        if complete and not (self.dialect.folds_statements and queues and limit > 0):
            self.complete(complete)
            complete = ()
        deadline = time.monotonic() + timeout
        while True:
            claims = self._claim(queues, limit, worker_id, complete)
            complete = ()
            if claims or time.monotonic() >= deadline:
                return claims
            self.dialect.wait(deadline - time.monotonic())

    def _claim(self, queues: Sequence[str], limit: int, worker_id: str, complete: Sequence[Claim] = ()) -> list[Claim]:
        now = self.clock()
        lease_until = now + self.setting("LEASE_SECONDS")
        claims: list[Claim] = []
        claim_sql = self.dialect.claim_sql()
        for queue in queues:
            if len(claims) >= limit:
                break
            token = uuid.uuid4().hex
            sql, params = claim_sql, [worker_id, token, lease_until, now, queue, queue, limit - len(claims)]
            acking = complete
            if complete:
                # The claims the acknowledgement left (a job others wait for: has_dependants) come
                # back as rows without a payload, and are acknowledged with their dependants next.
                ack_sql, ack_params = self._ack_sql(complete, now)
                values, pairs = self._left_values(complete)
                sql = (f"WITH {ack_sql}, claimed AS ({sql}) SELECT * FROM claimed UNION ALL SELECT NULL, v.job_id, "
                       f"NULL, NULL, NULL FROM (VALUES {values}) v(job_id) WHERE v.job_id NOT IN "
                       "(SELECT job_id FROM acked)")
                params = [*ack_params, *params, *pairs]
                complete = ()
            with self.cursor() as cursor:  # one statement, atomic on its own: no BEGIN/COMMIT round trips
                cursor.execute(sql, params)
                found = cursor.fetchall()
            left = {r[1] for r in found if r[2] is None}
            if left:
                self._complete_with_dependants([c for c in acking if split_token(c)[0] in left], now)
            rows = sorted((r for r in found if r[2] is not None), key=lambda r: (-r[3], r[4], r[0]))
            for _, job_id, payload, _, _ in rows:
                claims.append(fenced_claim(bytes(payload), job_id, token, worker_id, lease_until))
        return claims

    def _ack_sql(self, claims: Sequence[Claim], now: float) -> tuple[str, list]:
        """:meth:`complete` as the WITH part of one PostgreSQL statement: finish (or delete)
        the jobs whose lease token still matches and add them to the day's counter."""
        finish, params = self._finish_sql(claims, now, plain=True)
        sql = (f"acked AS ({finish} RETURNING job_id), "
               "counted AS (INSERT INTO djjobs_dailystat (day, processed, failed) "
               "SELECT %s, count(*), 0 FROM acked HAVING count(*) > 0 ON CONFLICT (day) DO UPDATE "
               "SET processed = djjobs_dailystat.processed + excluded.processed RETURNING 1)")
        return sql, [*params, dt.date.fromtimestamp(now).isoformat()]

    def _left_values(self, claims: Sequence[Claim]) -> tuple[str, list]:
        return ", ".join(["(%s)"] * len(claims)), [split_token(c)[0] for c in claims]

    def _finish_sql(self, claims: Sequence[Claim], now: float, plain: bool = False) -> tuple[str, list]:
        """The statement that ends succeeded jobs: kept as ``finished`` for the retention
        period, or deleted when there is none. ``plain``: only jobs nobody waits for (the
        others are ended with their dependants settled: waits.py)."""
        fenced, pairs = _fenced(claims)
        if plain:
            fenced = f"{fenced} AND NOT has_dependants"
        if self.setting("FINISHED_RETENTION_SECONDS") > 0:
            return ("UPDATE djjobs_job SET state = 'finished', updated_at = %s, lease_token = NULL, "
                    f"lease_owner = NULL, lease_until = NULL WHERE {fenced}", [now, *pairs])
        return f"DELETE FROM djjobs_job WHERE {fenced}", pairs

    def _move(self, claim: Claim, state: str, envelope: Envelope | None, run_at: float | None,
              position: int | None = None, failed: bool | None = None, expired_before: float | None = None,
              error: dict | None = None) -> bool:
        """Move a claimed job out of running, fenced by its lease token (and, for lease
        recovery, by the lease still being expired). A job with a cancel request bound for
        retry, scheduled or ready ends cancelled instead, in the same statement."""
        job_id, token = split_token(claim)
        now = self.clock()
        sets = ["state = %s", "run_at = %s", "updated_at = %s", "lease_owner = NULL", "lease_token = NULL",
                "lease_until = NULL", "cancel_requested = NULL"]
        params: list = [state, run_at, now]
        if state in ("retry", "scheduled", "ready"):
            sets[0] = "state = CASE WHEN cancel_requested IS NULL THEN %s ELSE 'cancelled' END"
            sets.append("unique_key = CASE WHEN cancel_requested IS NULL THEN unique_key END")
        if envelope is not None:
            sets += ["payload = %s", "queue = %s", "priority = %s", "attempts = %s", "error = %s"]
            params += [envelope.encode(), envelope.queue, envelope.priority, envelope.executions, _error_text(envelope)]
        elif state == "dead":  # the payload stays as it was; the error (if known) goes beside it
            sets.append("error = %s")
            params.append(_text_of(error or {}))
        if state in ("dead", "cancelled"):  # it no longer holds a uniqueness key, also if retried later
            sets.append("unique_key = NULL")
        if position is not None:
            sets.append("position = %s")
            params.append(position)
        where, fence = "job_id = %s AND lease_token = %s AND state = 'running'", [job_id, token]
        if expired_before is not None:
            where, fence = f"{where} AND lease_until < %s", [*fence, expired_before]
        # (back to ready it keeps its slot, unless a cancel request ends it: the key is locked then too)
        slot = concurrency_slot(envelope or claim.envelope)
        with transaction.atomic(using=self.alias), self.cursor() as cursor:
            if slot is not None:  # it lets its slot go: the key's oldest blocked job takes it
                flow.lock_keys(cursor, [slot])
            cursor.execute(f"UPDATE djjobs_job SET {', '.join(sets)} WHERE {where} RETURNING state", [*params, *fence])
            ended = cursor.fetchone()
            moved = ended is not None
            if moved and ended[0] in ("dead", "cancelled"):  # an end gone badly for those waiting for it
                self._settle(cursor, [(job_id, ended[0])], now)
            redirected = moved and ended[0] == "cancelled" and state != "cancelled"  # by its cancel request
            if moved and failed is not None and not redirected:  # (cancelled: counted neither processed nor failed)
                self._count(cursor, failed, 1, now)
            if moved and slot is not None:
                self._unblock(cursor, [slot], now)
        if redirected:
            self._trim_dead("cancelled")
        return moved

    def _count(self, cursor, failed: bool, n: int, now: float) -> None:
        day = dt.date.fromtimestamp(now).isoformat()
        column = "failed" if failed else "processed"
        cursor.execute(f"INSERT INTO djjobs_dailystat (day, processed, failed) VALUES (%s, %s, %s) "
                       f"ON CONFLICT (day) DO UPDATE SET {column} = djjobs_dailystat.{column} + %s",
                       [day, 0 if failed else n, n if failed else 0, n])

    def _complete_limited(self, claims: Sequence[Claim]) -> Sequence[Claim]:
        """Acknowledge the concurrency-limited ones of ``claims`` in one transaction that
        locks their keys, finishes them and admits each key's oldest blocked jobs; return
        the others."""
        limited = [(c, slot) for c in claims if (slot := concurrency_slot(c.envelope))]
        if not limited:
            return claims
        now = self.clock()
        sql, params = self._finish_sql([c for c, _ in limited], now)
        with transaction.atomic(using=self.alias), self.cursor() as cursor:
            flow.lock_keys(cursor, [slot for _, slot in limited])
            cursor.execute(f"{sql} RETURNING job_id, has_dependants", params)
            done = cursor.fetchall()
            if done:
                self._count(cursor, False, len(done), now)
            self._settle(cursor, [(job_id, "") for job_id, dependants in done if dependants], now)
            self._unblock(cursor, [slot for _, slot in limited], now)
        return [c for c in claims if not concurrency_slot(c.envelope)]

    def _unblock(self, cursor, slots, now: float) -> None:
        admitted = sum(flow.unblock(cursor, key, limit, now, self._us(now)) for key, limit in sorted(set(slots)))
        if admitted:
            self.dialect.notify(cursor, {"*"})

    def complete(self, claims: Sequence[Claim]) -> None:
        claims = self._complete_limited(claims)
        if not claims:
            return
        now = self.clock()
        if self.dialect.folds_statements:  # one statement: no BEGIN/COMMIT round trips
            sql, params = self._ack_sql(claims, now)
            with self.cursor() as cursor:
                cursor.execute(f"WITH {sql} SELECT count(*) FROM acked", params)
                acked = cursor.fetchone()[0]
        else:
            sql, params = self._finish_sql(claims, now, plain=True)
            with transaction.atomic(using=self.alias), self.cursor() as cursor:
                cursor.execute(sql, params)
                acked = cursor.rowcount
                if acked:
                    self._count(cursor, False, acked, now)
        if acked < len(claims):  # others wait for some (or their lease was lost): waits.py
            self._complete_with_dependants(claims, now)

    def retry(self, claim: Claim, envelope: Envelope, run_at: float) -> None:
        self._move(claim, "retry", envelope, run_at, failed=True)

    def reschedule(self, claim: Claim, envelope: Envelope, run_at: float) -> None:
        self._move(claim, "scheduled", envelope, run_at)

    def kill(self, claim: Claim, envelope: Envelope | None, error: dict | None = None) -> None:
        if self._move(claim, "dead", envelope, None, failed=True, error=error):
            self._trim_dead()

    def release(self, claims: Sequence[Claim]) -> None:
        for claim in reversed(claims):  # each goes to the front: the last first
            self._move(claim, "ready", None, None, position=-self._us())

    def heartbeat(self, worker: WorkerInfo, claims: Sequence[Claim]) -> None:
        """Renew the leases, then upsert the worker's row: writes only, leases first. On
        SQLite a transaction that read before writing cannot wait for the write lock (it
        fails at once with "database is locked" unless transactions are IMMEDIATE), and a
        lost renewal can let a long job's lease expire and the job run twice. On
        PostgreSQL the renewal skips rows an acknowledgement has locked (that job is
        finishing; the next heartbeat renews it if the acknowledgement rolls back), so
        the two never wait for each other in opposite orders (a deadlock)."""
        from ...models import WorkerRow
        now = self.clock()
        lease_until = now + self.setting("LEASE_SECONDS")
        with transaction.atomic(using=self.alias):
            if claims:
                fenced, pairs = _fenced(claims)
                with self.cursor() as cursor:
                    cursor.execute(self.dialect.renew_sql(fenced), [lease_until, *pairs])
            WorkerRow.objects.using(self.alias).bulk_create(
                [WorkerRow(worker_id=worker.worker_id, host=worker.host, pid=worker.pid, queues=list(worker.queues),
                           concurrency=worker.concurrency, started_at=worker.started_at, heartbeat_at=now,
                           busy=list(worker.busy))],
                update_conflicts=True, unique_fields=["worker_id"],
                update_fields=["host", "pid", "queues", "concurrency", "started_at", "heartbeat_at", "busy"])
        for claim in claims:
            claim.lease_until = lease_until

    def unregister(self, worker_id: str) -> None:
        from ...models import WorkerRow
        WorkerRow.objects.using(self.alias).filter(worker_id=worker_id).delete()

    def recover_expired(self) -> int:
        from ...models import JobRow, WorkerRow
        now = self.clock()
        expired = JobRow.objects.using(self.alias).filter(state="running", lease_until__lt=now).order_by(
            "lease_until").values_list("job_id", "lease_token", "payload")[:100]
        recovered = recover_orphans(((i, t, bytes(p)) for i, t, p in expired), now,
                                    self._orphan_move(now, expired_before=now))
        lease = self.setting("LEASE_SECONDS")
        WorkerRow.objects.using(self.alias).filter(heartbeat_at__lt=now - lease).delete()
        return recovered

    def abandon(self, claims: Sequence[Claim], reason: str = "") -> int:
        from ...models import JobRow
        tokens = dict(split_token(c) for c in claims)
        rows = JobRow.objects.using(self.alias).filter(state="running", job_id__in=list(tokens)).values_list(
            "job_id", "lease_token", "payload")
        now = self.clock()
        return recover_orphans([(i, t, bytes(p)) for i, t, p in rows if tokens[i] == t], now,
                               self._orphan_move(now), reason)

    def _orphan_move(self, now: float, expired_before: float | None = None):
        def move(claim: Claim, fate: str, env: Envelope | None, error: dict | None) -> bool:
            if fate == "requeue":
                return self._move(claim, "ready", env, None, position=-self._us(now), expired_before=expired_before)
            return self._move(claim, "dead", env, None, failed=True, expired_before=expired_before, error=error)
        return move

    def promote_due(self) -> int:
        """Due jobs to their queues in one statement; those with a concurrency key then take
        a slot or are blocked (flow.py), and keys with blocked jobs admit them into slots freed
        without an outcome (flow.repair)."""
        now = self.clock()
        with transaction.atomic(using=self.alias), self.cursor() as cursor:
            # keys locked before the rows, the order of every other step (no deadlock)
            cursor.execute("SELECT DISTINCT concurrency_key, concurrency_limit FROM djjobs_job WHERE state IN "
                           "('scheduled', 'retry') AND run_at <= %s AND concurrency_key IS NOT NULL", [now])
            flow.lock_keys(cursor, cursor.fetchall())
            cursor.execute("UPDATE djjobs_job SET state = 'ready', position = %s, updated_at = %s "
                           "WHERE state IN ('scheduled', 'retry') AND run_at <= %s "
                           "RETURNING id, concurrency_key, concurrency_limit", [self._us(now), now, now])
            promoted = cursor.fetchall()
            limited = sorted((row_id, key, limit) for row_id, key, limit in promoted if key is not None)
            if limited:
                flow.admit_rows(cursor, limited, now, self._us(now))
            if flow.repair(cursor, now, self._us(now)):
                self.dialect.notify(cursor, {"*"})
            return len(promoted)

    def prune(self) -> int:
        """Delete finished jobs past their retention and dead jobs past the caps, in small batches."""
        from ...models import JobRow
        now = self.clock()
        jobs = JobRow.objects.using(self.alias)
        cutoff = now - self.setting("FINISHED_RETENTION_SECONDS")
        ids = list(jobs.filter(state="finished", updated_at__lt=cutoff).values_list("id", flat=True)[:PRUNE_BATCH])
        deleted = jobs.filter(id__in=ids).delete()[0] if ids else 0
        return deleted + self._trim_dead() + self._trim_dead("cancelled") + self._prune_ticks(now)

    def _prune_ticks(self, now: float) -> int:
        """Cron tick claims older than TICK_CLAIM_SECONDS (8 days, as Redis keeps them), at
        most once an hour per process: a claim only has to outlive the schedulers' race for
        its tick and the cron state that records it."""
        from ...models import CronTick
        if now - self._ticks_pruned_at < 3600:
            return 0
        self._ticks_pruned_at = now
        self._prune_flow(now)
        ticks = CronTick.objects.using(self.alias)
        ids = list(ticks.filter(claimed_at__lt=now - TICK_CLAIM_SECONDS).values_list("id", flat=True)[:PRUNE_BATCH])
        return ticks.filter(id__in=ids).delete()[0] if ids else 0

    def _trim_dead(self, state: str = "dead") -> int:
        """Cap the dead (or cancelled) jobs: DEAD_MAX_DAYS, then DEAD_MAX_JOBS."""
        from ...models import JobRow
        jobs = JobRow.objects.using(self.alias)
        cutoff = self.clock() - self.setting("DEAD_MAX_DAYS") * 86400
        deleted = jobs.filter(state=state, updated_at__lt=cutoff).delete()[0]
        excess = jobs.filter(state=state).count() - self.setting("DEAD_MAX_JOBS")
        if excess > 0:
            ids = list(jobs.filter(state=state).order_by("updated_at", "id").values_list("id", flat=True)
                       [:min(excess, PRUNE_BATCH)])
            deleted += jobs.filter(id__in=ids, state=state).delete()[0]  # not one retried meanwhile
        return deleted

    # --- scheduler ------------------------------------------------------
    def claim_tick(self, name: str, tick_at: float) -> bool:
        from ...models import CronTick
        try:
            with transaction.atomic(using=self.alias):
                CronTick.objects.using(self.alias).create(name=name, tick_at=tick_at, claimed_at=self.clock())
            return True
        except IntegrityError:
            return False

    def cron_states(self) -> dict[str, dict]:
        from ...models import CronState
        return {row.name: row.state for row in CronState.objects.using(self.alias).all()}

    def set_cron_state(self, name: str, state: dict) -> None:
        from ...models import CronState
        CronState.objects.using(self.alias).update_or_create(name=name, defaults={"state": state})

    # --- results --------------------------------------------------------
    def save_result(self, job_id: str, result: dict, ttl: float) -> None:
        from ...models import TaskResultRow
        TaskResultRow.objects.using(self.alias).update_or_create(
            job_id=job_id, defaults={"data": orjson.dumps(result), "expires_at": self.clock() + ttl})

    def load_result(self, job_id: str) -> dict | None:
        from ...models import TaskResultRow
        row = TaskResultRow.objects.using(self.alias).filter(job_id=job_id, expires_at__gt=self.clock()).first()
        return orjson.loads(bytes(row.data)) if row else None

    # --- inspection -----------------------------------------------------
    def _jobs(self):
        from ...models import JobRow
        return JobRow.objects.using(self.alias)

    def counts(self) -> Counts:
        from django.db.models import Count, Sum
        from ...models import DailyStat
        by_state = dict(self._jobs().filter(state__in=ACTIVE).values_list("state").annotate(n=Count("id")))
        stats = DailyStat.objects.using(self.alias)
        totals = stats.aggregate(p=Sum("processed"), f=Sum("failed"))
        today = stats.filter(day=dt.date.fromtimestamp(self.clock()).isoformat()).first()
        return Counts(totals["p"] or 0, totals["f"] or 0, today.processed if today else 0,
                      today.failed if today else 0, by_state.get("ready", 0), by_state.get("scheduled", 0),
                      by_state.get("retry", 0), by_state.get("dead", 0), by_state.get("running", 0),
                      by_state.get("blocked", 0), by_state.get("cancelled", 0), by_state.get("waiting", 0))

    def queues(self) -> list[QueueInfo]:
        from django.db.models import Count, Min
        from ...models import PausedQueue
        now = self.clock()
        ready = {q: (n, oldest) for q, n, oldest in self._jobs().filter(state="ready").values("queue")
                 .annotate(n=Count("id"), oldest=Min("enqueued_at")).values_list("queue", "n", "oldest")}
        paused = set(PausedQueue.objects.using(self.alias).values_list("name", flat=True))
        known = set(self._jobs().filter(state__in=ACTIVE).values_list("queue", flat=True).distinct())
        return [QueueInfo(name, ready.get(name, (0, now))[0], max(0.0, now - ready.get(name, (0, now))[1]),
                          name in paused) for name in sorted(known | paused | set(ready))]

    def _record(self, row) -> JobRecord:
        raw = bytes(row.payload)
        at = row.run_at if row.state in ("scheduled", "retry") else row.updated_at
        env = decode_or_none(raw)
        error = _stored_error(row.error, env, row.updated_at) if row.state == "dead" else None
        return JobRecord(row.job_id, row.state, raw, env, at, row.queue, error,
                         row.lease_owner if row.state == "running" else None)

    def _storable(self, text: str) -> bool:
        """Whether ``text`` can be in a column here: PostgreSQL's text holds no NUL (it
        raises DataError for a parameter with one), so an id or name with one matches
        nothing, and is answered as such rather than with an error."""
        return "\x00" not in text or connections[self.alias].vendor != "postgresql"

    def _ids(self, job_ids: Iterable[str]) -> list[str]:
        return [i for i in job_ids if self._storable(i)]

    def jobs(self, state: str, *, queue: str | None = None, job: str | None = None,
             search: str | None = None, page: int = 1, per_page: int = 25) -> Page:
        if not all(self._storable(v) for v in (queue or "", job or "")):
            return Page([], 0, page, per_page)
        rows = self._jobs().filter(state=state)
        if queue:
            rows = rows.filter(queue=queue)
        if job:
            rows = rows.filter(job_name=job)
        if search:
            rows = self._search(rows, search)
        order = {"dead": ("-updated_at", "-id"), "cancelled": ("-updated_at", "-id"), "scheduled": ("run_at", "id"), "retry": ("run_at", "id"),
                 "blocked": ("concurrency_key", "position", "id"), "waiting": ("position", "id")}
        rows = rows.order_by(*order.get(state, ("-priority", "position", "id")))
        start = (page - 1) * per_page
        return Page([self._record(r) for r in rows[start:start + per_page]], rows.count(), page, per_page)

    def _search(self, rows, needle: str):
        """Job id, error text, or the payload's bytes, ignoring the case of ASCII letters
        as every adapter does (the payload column is binary: it is compared as text after
        PostgreSQL's escape encoding, which leaves ASCII as it is)."""
        from django.db.models import Q
        lowered = needle.encode().lower()  # bytes.lower(): ASCII letters only
        if connections[self.alias].vendor == "postgresql":
            contains = "position(%s in lower(encode(payload, 'escape'))) > 0"
            param = "".join(f"\\{b:03o}" if b == 0 or b >= 0x80 else "\\\\" if b == 0x5C else chr(b)
                            for b in lowered)
        else:
            contains, param = "instr(lower(CAST(payload AS TEXT)), %s) > 0", lowered.decode()
        in_payload = Q(id__in=rows.extra(where=[contains], params=[param]).values("id"))
        if not self._storable(needle):  # in no text column: only the payload's bytes can hold it
            return rows.filter(in_payload)
        return rows.filter(Q(job_id=needle) | Q(error__icontains=needle) | in_payload)

    def get(self, job_id: str) -> JobRecord | None:
        if not self._storable(job_id):
            return None
        row = self._jobs().filter(job_id=job_id, state__in=ACTIVE).first()
        return self._record(row) if row else None

    def get_finished(self, job_id: str) -> JobRecord | None:
        if not self._storable(job_id):
            return None
        row = self._jobs().filter(job_id=job_id, state="finished").first()
        return self._record(row) if row else None

    def retry_now(self, job_ids: Iterable[str]) -> int:
        now = self.clock()
        ids = self._ids(job_ids)
        if not ids:
            return 0
        marks = ", ".join(["%s"] * len(ids))
        with transaction.atomic(using=self.alias), self.cursor() as cursor:
            cursor.execute(f"SELECT DISTINCT concurrency_key, concurrency_limit FROM djjobs_job WHERE job_id IN ({marks}) "
                           "AND concurrency_key IS NOT NULL", ids)
            flow.lock_keys(cursor, cursor.fetchall())  # before the rows, as every other step
            cursor.execute(f"UPDATE djjobs_job SET state = 'ready', position = %s, run_at = NULL, updated_at = %s "
                           f"WHERE job_id IN ({', '.join(['%s'] * len(ids))}) AND state IN ('scheduled', 'retry', "
                           "'dead', 'cancelled') RETURNING id, concurrency_key, concurrency_limit", [self._us(now), now, *ids])
            moved = cursor.fetchall()
            limited = sorted((row_id, key, limit) for row_id, key, limit in moved if key is not None)
            if limited:
                flow.admit_rows(cursor, limited, now, self._us(now))
        return len(moved)

    def kill_now(self, job_ids: Iterable[str]) -> int:
        ids, now = self._ids(job_ids), self.clock()
        if not ids:
            return 0
        with transaction.atomic(using=self.alias), self.cursor() as cursor:
            cursor.execute(f"UPDATE djjobs_job SET state = 'dead', updated_at = %s, unique_key = NULL WHERE job_id IN "
                           f"({', '.join(['%s'] * len(ids))}) AND state IN ('scheduled', 'retry') RETURNING job_id",
                           [now, *ids])
            moved = [r[0] for r in cursor.fetchall()]
            self._settle(cursor, [(job_id, "dead") for job_id in moved], now)
        self._trim_dead()
        return len(moved)

    def delete(self, job_ids: Iterable[str]) -> int:
        ids = self._ids(job_ids)
        return self._delete_where(f"job_id IN ({', '.join(['%s'] * len(ids))}) AND state IN ('ready', 'scheduled', "
                                  "'retry', 'blocked', 'waiting', 'dead', 'cancelled')", ids) if ids else 0

    def clear(self, queue: str) -> int:
        if not self._storable(queue):
            return 0
        return self._delete_where("queue = %s AND state = 'ready'", [queue])

    def _delete_where(self, where: str, params: list) -> int:
        """Delete jobs, and give the concurrency slots they held to their keys' blocked jobs."""
        now = self.clock()
        with transaction.atomic(using=self.alias), self.cursor() as cursor:
            cursor.execute(f"SELECT DISTINCT concurrency_key, concurrency_limit FROM djjobs_job WHERE {where} "
                           "AND concurrency_key IS NOT NULL", params)
            slots = cursor.fetchall()
            flow.lock_keys(cursor, slots)
            cursor.execute(f"DELETE FROM djjobs_job WHERE {where} RETURNING job_id, has_dependants", params)
            gone = cursor.fetchall()
            deleted = len(gone)
            self._settle(cursor, [(job_id, "deleted") for job_id, dependants in gone if dependants], now)
            self._unblock(cursor, slots, now)
        return deleted

    def pause(self, queue: str) -> None:
        from ...models import PausedQueue
        PausedQueue.objects.using(self.alias).get_or_create(name=queue)

    def resume(self, queue: str) -> None:
        from ...models import PausedQueue
        PausedQueue.objects.using(self.alias).filter(name=queue).delete()

    def workers(self) -> list[WorkerInfo]:
        from ...models import WorkerRow
        live = self.clock() - 2 * self.setting("LEASE_SECONDS")
        return [WorkerInfo(w.worker_id, w.host, w.pid, list(w.queues), w.concurrency, w.started_at, w.heartbeat_at,
                           list(w.busy))
                for w in WorkerRow.objects.using(self.alias).filter(heartbeat_at__gte=live).order_by("worker_id")]

    def history(self, days: int = 30) -> list[tuple[str, int, int]]:
        from ...models import DailyStat
        today = dt.date.fromtimestamp(self.clock())
        span = [(today - dt.timedelta(days=n)).isoformat() for n in range(days - 1, -1, -1)]
        stats = {s.day: (s.processed, s.failed) for s in DailyStat.objects.using(self.alias).filter(day__in=span)}
        return [(day, *stats.get(day, (0, 0))) for day in span]

    def check(self) -> list[str]:
        if self.alias not in connections.settings:
            return [f"DJJOBS['DATABASE'] = {self.alias!r} is not in DATABASES."]
        vendor = connections[self.alias].vendor
        if vendor not in ("sqlite", "postgresql"):
            return [f"The database adapter supports SQLite and PostgreSQL, not {vendor}."]
        level = connections[self.alias].settings_dict.get("OPTIONS", {}).get("isolation_level")
        if vendor == "postgresql" and level is not None:
            import psycopg
            try:
                name = psycopg.IsolationLevel(level).name
            except ValueError:
                name = repr(level)
            if name not in ("READ_COMMITTED", "READ_UNCOMMITTED"):  # PostgreSQL reads the latter as the former
                return [f"DATABASES[{self.alias!r}] sets isolation_level {name}: the database adapter needs READ "
                        "COMMITTED (under a stricter level, concurrent workers' updates of the same rows fail with "
                        "serialization errors, and jobs whose outcome could not be stored run again). Point "
                        "DJJOBS['DATABASE'] at an alias of the same database without that option."]
        return []

    def advice(self) -> list[tuple[str, str]]:
        settings = connections[self.alias].settings_dict if self.alias in connections.settings else {}
        if "sqlite" in settings.get("ENGINE", "") and \
                str(settings.get("OPTIONS", {}).get("transaction_mode", "")).upper() != "IMMEDIATE":
            return [(f"DATABASES[{self.alias!r}] is SQLite without transaction_mode IMMEDIATE: a transaction that "
                     "reads before it writes (such as a view that enqueues jobs inside atomic()) fails at once with "
                     "\"database is locked\" while a worker writes, instead of waiting for the busy timeout.",
                     'Add "transaction_mode": "IMMEDIATE" to that database\'s OPTIONS (docs/configuration.md, SQLite).')]
        return []

    def close(self) -> None:
        if self._dialect is not None:
            self._dialect.close()
