"""Batches on the database adapter (djjobs/batches.py; the contract in ``adapters/base.py``).

A batch is a ``djjobs_batch`` row with its counts; a job pending in it has a
``djjobs_batch_job`` row and ``has_dependants`` (so its end goes through ``_settle``, never
the plain acknowledgement). Why it holds under concurrency (PostgreSQL, READ COMMITTED):

- A job joins in the transaction that stores it: its rows and the batch's count are
  committed together, and the count's UPDATE refuses a complete batch (the whole enqueue
  rolls back).
- The step that ends a job deletes its ``djjobs_batch_job`` row: only the step that deletes
  it settles it, so a job ended twice (at-least-once) counts once. Settling is then an
  UPDATE of the batch row, which row-locks it: two jobs ending at once are applied one
  after the other, and the statements that follow (did it complete? fire the callback)
  run with the lock held and a snapshot that includes the other's commit. Completing is a
  single-winner ``UPDATE ... WHERE completed_at IS NULL``; each callback's event is
  recorded in ``fired`` by a single-winner UPDATE too.
- Job rows are locked before the batch row in every step (enqueue, settle), and batch rows
  in id order, so these steps cannot deadlock each other.

SQLite has one writer at a time: the same steps are simply serial.
"""
from __future__ import annotations

from typing import Sequence

import orjson
from django.db import transaction

from ...batch_status import BatchStatus, fired_status
from ...envelope import Envelope
from ..base import BatchPage, batch_refused, fired

FIELDS = {"": "succeeded", "dead": "dead", "discarded": "discarded", "deleted": "discarded", "cancelled": "cancelled"}
STATUS = ("batch_id, description, total, pending, succeeded, dead, discarded, cancelled, closed, created_at, "
          "completed_at, properties, callback_ids")
REPAIR_LIMIT = 500
PRUNE_LIMIT = 1000


def _marks(values: Sequence) -> str:
    return ", ".join(["%s"] * len(values))


def _status(row) -> BatchStatus:
    return BatchStatus(id=row[0], description=row[1], total=row[2], pending=row[3], succeeded=row[4], dead=row[5],
                       discarded=row[6], cancelled=row[7], closed=bool(row[8]), created_ts=row[9],
                       completed_ts=row[10], properties=orjson.loads(row[11]), callbacks=orjson.loads(row[12]))


class DatabaseBatches:
    """Mixed into DatabaseAdapter (it uses ``alias``, ``cursor``, ``clock``, ``_row``,
    ``dialect``, ``_settle`` and ``PLAIN_INSERT``, the INSERT of a job row)."""

    def open_batch(self, status: BatchStatus, callbacks: dict[str, Envelope]) -> None:
        with self.cursor() as cursor:
            cursor.execute("INSERT INTO djjobs_batch (batch_id, description, created_at, closed, total, pending, "
                           "succeeded, dead, discarded, cancelled, properties, callbacks, callback_ids, fired) "
                           "VALUES (%s, %s, %s, FALSE, 0, 0, 0, 0, 0, 0, %s, %s, %s, '') ON CONFLICT (batch_id) "
                           "DO NOTHING",
                           [status.id, status.description, status.created_ts, orjson.dumps(status.properties).decode(),
                            orjson.dumps({e: env.encode().decode() for e, env in callbacks.items()}).decode(),
                            orjson.dumps({e: env.job_id for e, env in callbacks.items()}).decode()])

    def close_batch(self, batch_id: str) -> None:
        now = self.clock()
        with transaction.atomic(using=self.alias), self.cursor() as cursor:
            cursor.execute("UPDATE djjobs_batch SET closed = TRUE WHERE batch_id = %s AND NOT closed", [batch_id])
            if cursor.rowcount:
                self._batch_check(cursor, batch_id, now)

    def batch_status(self, batch_id: str) -> BatchStatus | None:
        with self.cursor() as cursor:
            cursor.execute(f"SELECT {STATUS} FROM djjobs_batch WHERE batch_id = %s", [batch_id])
            row = cursor.fetchone()
        return _status(row) if row else None

    def batches(self, *, page: int = 1, per_page: int = 25) -> BatchPage:
        with self.cursor() as cursor:
            cursor.execute(f"SELECT {STATUS} FROM djjobs_batch ORDER BY created_at DESC, id DESC LIMIT %s OFFSET %s",
                           [per_page, (page - 1) * per_page])
            rows = cursor.fetchall()
            cursor.execute("SELECT count(*) FROM djjobs_batch")
            total = cursor.fetchone()[0]
        return BatchPage([_status(r) for r in rows], total, page, per_page)

    def batch_failures(self, batch_id: str, limit: int = 100) -> list[str]:
        with self.cursor() as cursor:
            cursor.execute("SELECT job_id FROM djjobs_job WHERE batch_id = %s AND state IN ('dead', 'cancelled') "
                           "ORDER BY updated_at DESC, id DESC LIMIT %s", [batch_id, limit])
            return [r[0] for r in cursor.fetchall()]

    def repair_batches(self) -> int:
        now = self.clock()
        changed = 0
        with transaction.atomic(using=self.alias), self.cursor() as cursor:
            cursor.execute("SELECT m.job_id, m.batch_id FROM djjobs_batch_job m WHERE NOT EXISTS (SELECT 1 FROM "
                           "djjobs_job j WHERE j.job_id = m.job_id AND j.state <> 'finished') LIMIT %s", [REPAIR_LIMIT])
            lost = cursor.fetchall()
            if lost:
                self._settle(cursor, [(job_id, "deleted") for job_id, _ in lost], now)
                changed += len({batch_id for _, batch_id in lost})
            cursor.execute("SELECT batch_id FROM djjobs_batch WHERE completed_at IS NULL AND closed AND pending <= 0 "
                           "ORDER BY batch_id LIMIT %s", [REPAIR_LIMIT])
            for (batch_id,) in cursor.fetchall():
                changed += self._batch_check(cursor, batch_id, now)
            cutoff = now - self.setting("BATCH_RETENTION_SECONDS")
            cursor.execute("DELETE FROM djjobs_batch WHERE id IN (SELECT id FROM djjobs_batch WHERE completed_at < %s "
                           "ORDER BY completed_at LIMIT %s)", [cutoff, PRUNE_LIMIT])
        return changed

    # --- inside the steps that store or end jobs (the caller's transaction) --------
    def _batch_join(self, cursor, members: dict[str, list[str]], waiting: set[str], now: float) -> None:
        """The jobs just stored for each batch (job ids; those a unique conflict did not store
        are skipped) join it; one with prerequisites (in ``waiting``) that its policy discarded
        as it was stored counts discarded. Refuses (BatchFinished) a batch complete or unknown."""
        for batch_id in sorted(members):
            ids, stored = members[batch_id], []
            for start in range(0, len(ids), 1000):
                chunk = ids[start:start + 1000]
                cursor.execute(f"UPDATE djjobs_job SET batch_id = %s, has_dependants = TRUE WHERE job_id IN "
                               f"({_marks(chunk)}) RETURNING job_id, state", [batch_id, *chunk])
                stored += cursor.fetchall()
            for start in range(0, len(stored), 1000):
                chunk = stored[start:start + 1000]
                cursor.execute("INSERT INTO djjobs_batch_job (job_id, batch_id) VALUES " + ", ".join(["(%s, %s)"] * len(chunk)),
                               [v for job_id, _ in chunk for v in (job_id, batch_id)])
            found = {job_id for job_id, _ in stored}
            gone = sum(1 for job_id in ids if job_id in waiting and job_id not in found)
            cursor.execute("UPDATE djjobs_batch SET total = total + %s, pending = pending + %s, discarded = discarded "
                           "+ %s WHERE batch_id = %s AND completed_at IS NULL",
                           [len(stored) + gone, len(stored), gone, batch_id])
            if not cursor.rowcount:
                raise batch_refused(batch_id)
            dead = [(job_id, "dead") for job_id, state in stored if state == "dead"]  # its prerequisite had failed
            if dead:
                self._settle_batches(cursor, dead, now)

    def _settle_batches(self, cursor, ended: Sequence[tuple[str, str]], now: float) -> None:
        """Jobs that ended (id, how): settle those pending in a batch, and fire what that decides."""
        how = dict(ended)
        ids = sorted(how)
        by_batch: dict[str, dict[str, int]] = {}
        failed: set[str] = set()
        for start in range(0, len(ids), 1000):
            chunk = ids[start:start + 1000]
            cursor.execute(f"DELETE FROM djjobs_batch_job WHERE job_id IN ({_marks(chunk)}) RETURNING job_id, batch_id",
                           chunk)
            for job_id, batch_id in cursor.fetchall():
                field = FIELDS.get(how[job_id], "discarded")
                counts = by_batch.setdefault(batch_id, {})
                counts[field] = counts.get(field, 0) + 1
                if field == "dead":
                    failed.add(batch_id)
        for batch_id in sorted(by_batch):
            counts = by_batch[batch_id]
            sets = ", ".join(f"{field} = {field} + %s" for field in sorted(counts))
            cursor.execute(f"UPDATE djjobs_batch SET pending = pending - %s, {sets} WHERE batch_id = %s",
                           [sum(counts.values()), *(counts[f] for f in sorted(counts)), batch_id])
            if batch_id in failed:
                self._batch_fire(cursor, batch_id, "death", now)
            self._batch_check(cursor, batch_id, now)

    def _batch_check(self, cursor, batch_id: str, now: float) -> int:
        """Complete the batch if it is closed with nothing pending (single winner)."""
        cursor.execute("UPDATE djjobs_batch SET completed_at = %s WHERE batch_id = %s AND closed AND pending <= 0 "
                       "AND completed_at IS NULL RETURNING dead + discarded + cancelled", [now, batch_id])
        row = cursor.fetchone()
        if row is None:
            return 0
        self._batch_fire(cursor, batch_id, "complete", now)
        if row[0] == 0:
            self._batch_fire(cursor, batch_id, "success", now)
        return 1

    def _batch_fire(self, cursor, batch_id: str, event: str, now: float) -> None:
        cursor.execute("UPDATE djjobs_batch SET fired = fired || %s WHERE batch_id = %s AND fired NOT LIKE %s "
                       f"RETURNING callbacks, {STATUS}", [f"{event},", batch_id, f"%{event},%"])
        row = cursor.fetchone()
        if row is None:
            return
        template = orjson.loads(row[0]).get(event)
        if template is None:
            return
        env = fired(Envelope.decode(template), fired_status(_status(row[1:]), event, now), now)
        cursor.execute(self.PLAIN_INSERT, self._row(env, env.encode(), now))
        self.dialect.notify(cursor, {env.queue})
