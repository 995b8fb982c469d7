"""The database adapter's cancellation (djjobs/cancellation.py; the contract in
``adapters/base.py``). Waiting jobs end ``cancelled`` in one UPDATE (a claim's UPDATE and
this one cannot both take a row: each requires the state the other changes); running ones
get ``cancel_requested``, which the adapter's ``_move`` honours in the statement storing the
run's outcome. Concurrency keys are locked before the rows, as in every other step."""
from __future__ import annotations

from typing import Iterable

from django.db import transaction

from ...envelope import Envelope
from ..base import Claim
from . import flow

WAITING = "('ready', 'scheduled', 'retry', 'blocked', 'waiting')"


class DatabaseCancel:
    """Mixed into DatabaseAdapter (it uses ``alias``, ``cursor``, ``clock``, ``_ids``, ``_move``,
    ``_unblock``, ``_settle``, ``_trim_dead``)."""

    def cancel(self, job_ids: Iterable[str]) -> dict[str, str]:
        ids = list(dict.fromkeys(self._ids(job_ids)))
        if not ids:
            return {}
        marks, now = ", ".join(["%s"] * len(ids)), self.clock()
        with transaction.atomic(using=self.alias), self.cursor() as cursor:
            cursor.execute(f"SELECT DISTINCT concurrency_key, concurrency_limit FROM djjobs_job WHERE job_id IN "
                           f"({marks}) AND state IN {WAITING} AND concurrency_key IS NOT NULL", ids)
            slots = cursor.fetchall()
            flow.lock_keys(cursor, slots)
            cursor.execute(f"UPDATE djjobs_job SET state = 'cancelled', updated_at = %s, run_at = NULL, "
                           f"unique_key = NULL WHERE job_id IN ({marks}) AND state IN {WAITING} RETURNING job_id",
                           [now, *ids])
            done = {row[0]: "cancelled" for row in cursor.fetchall()}
            self._settle(cursor, [(job_id, "cancelled") for job_id in done], now)  # waits.py
            cursor.execute(f"UPDATE djjobs_job SET cancel_requested = COALESCE(cancel_requested, %s) "
                           f"WHERE job_id IN ({marks}) AND state = 'running' RETURNING job_id", [now, *ids])
            done.update((row[0], "cancelling") for row in cursor.fetchall())
            if slots:
                self._unblock(cursor, slots, now)
        if "cancelled" in done.values():
            self._trim_dead("cancelled")
        return {job_id: done[job_id] for job_id in ids if job_id in done}

    def cancel_requested(self, job_id: str) -> bool:
        if not self._ids([job_id]):
            return False
        with self.cursor() as cursor:
            cursor.execute("SELECT 1 FROM djjobs_job WHERE job_id = %s AND state = 'running' "
                           "AND cancel_requested IS NOT NULL", [job_id])
            return cursor.fetchone() is not None

    def cancel_run(self, claim: Claim, envelope: Envelope) -> None:
        if self._move(claim, "cancelled", envelope, None):
            self._trim_dead("cancelled")
