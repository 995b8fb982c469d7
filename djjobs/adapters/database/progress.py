"""The database adapter's ``save_progress`` (djjobs/continuations.py; the contract in
``adapters/base.py``): one UPDATE of the job's payload, fenced by its lease token and state,
in autocommit on the run's own thread (a checkpoint inside the caller's transaction is refused
before it gets here, so the progress never waits for a commit that may not come)."""
from __future__ import annotations

from ...envelope import Envelope
from ..base import Claim, split_token


class DatabaseProgress:
    """Mixed into DatabaseAdapter (it uses ``cursor`` and ``clock``)."""

    def save_progress(self, claim: Claim, envelope: Envelope) -> bool:
        job_id, token = split_token(claim)
        with self.cursor() as cursor:
            cursor.execute("UPDATE djjobs_job SET payload = %s, updated_at = %s WHERE job_id = %s AND "
                           "lease_token = %s AND state = 'running'", [envelope.encode(), self.clock(), job_id, token])
            return cursor.rowcount == 1
