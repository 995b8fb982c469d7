"""The database adapter's cancellation (djjobs/cancellation.py; the contract in
``adapters/base.py``). One UPDATE ends waiting jobs ``cancelled`` and gives running ones
``cancel_requested``, which the adapter's ``_move`` honours in the statement storing the run's
outcome. A claim racing it is waited for (or waits) on the row: the job is then cancelled
before the claim, which finds it no longer ready, or asked to stop after it. Concurrency keys
are locked before the rows, as in every other step."""
from __future__ import annotations

from typing import Iterable

from django.db import transaction

from ...envelope import Envelope
from ..base import Claim
from . import flow

#: what cancel() takes: a waiting job ends cancelled, a running one gets a request
TAKEN = "('ready', 'scheduled', 'retry', 'blocked', 'waiting', 'running')"


class DatabaseCancel:
    """Mixed into DatabaseAdapter (it uses ``alias``, ``cursor``, ``clock``, ``_ids``, ``_move``,
    ``_unblock``, ``_settle``, ``_trim_dead``)."""

    def cancel(self, job_ids: Iterable[str]) -> dict[str, str]:
        ids = list(dict.fromkeys(self._ids(job_ids)))
        if not ids:
            return {}
        marks, now = ", ".join(["%s"] * len(ids)), self.clock()
        with transaction.atomic(using=self.alias), self.cursor() as cursor:
            # Every key of these jobs, whatever their state now: a running job's outcome may
            # commit meanwhile (a release keeps its slot) and leave it for this step to end.
            cursor.execute(f"SELECT DISTINCT concurrency_key, concurrency_limit FROM djjobs_job WHERE job_id IN "
                           f"({marks}) AND concurrency_key IS NOT NULL", ids)
            slots = cursor.fetchall()
            flow.lock_keys(cursor, slots)
            # One statement for waiting and running jobs: with two, on PostgreSQL (a snapshot
            # per statement) a run's retry, reschedule or release committed between them left
            # the job seen running by the first and retrying by the second, cancelled by neither.
            # Here a row being moved is waited for and read again as it was committed.
            cursor.execute(
                "UPDATE djjobs_job SET "
                "cancel_requested = CASE WHEN state = 'running' THEN COALESCE(cancel_requested, %s) "
                "ELSE cancel_requested END, "
                "updated_at = CASE WHEN state = 'running' THEN updated_at ELSE %s END, "
                "run_at = CASE WHEN state = 'running' THEN run_at END, "
                "unique_key = CASE WHEN state = 'running' THEN unique_key END, "
                "state = CASE WHEN state = 'running' THEN 'running' ELSE 'cancelled' END "
                f"WHERE job_id IN ({marks}) AND state IN {TAKEN} RETURNING job_id, state", [now, now, *ids])
            done = {job_id: "cancelling" if state == "running" else "cancelled" for job_id, state in cursor.fetchall()}
            self._settle(cursor, [(job_id, "cancelled") for job_id, what in done.items() if what == "cancelled"],
                         now)  # waits.py
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
