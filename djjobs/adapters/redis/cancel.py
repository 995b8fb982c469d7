"""The Redis adapter's cancellation calls (djjobs/cancellation.py; the contract in
``adapters/base.py``): cancel.lua ends waiting jobs and stores requests for running ones,
which move.lua honours when the run's outcome is stored."""
from __future__ import annotations

from typing import Iterable

from ..base import Claim
from ...envelope import Envelope

BATCH = 1000


class RedisCancel:
    """Mixed into RedisAdapter (it uses ``run``, ``client``, ``keys``, ``clock``, ``_move``,
    ``_trim_dead``)."""

    def cancel(self, job_ids: Iterable[str]) -> dict[str, str]:
        ids, done = list(dict.fromkeys(job_ids)), {}
        for start in range(0, len(ids), BATCH):
            out = self.run("cancel", repr(self.clock()), *ids[start:start + BATCH])
            done.update((out[i].decode(), out[i + 1].decode()) for i in range(0, len(out), 2))
        if "cancelled" in done.values():
            self._trim_dead("cancelled")
        return done

    def cancel_requested(self, job_id: str) -> bool:
        # (a request outlives a run that succeeded until promote.lua drops it: still running?)
        with self.client.pipeline(transaction=False) as pipe:
            pipe.hexists(self.keys.cancel, job_id)
            pipe.zscore(self.keys.running, job_id)
            asked, running = pipe.execute()
        return bool(asked) and running is not None

    def cancel_run(self, claim: Claim, envelope: Envelope) -> None:
        if self._move(claim, "cancelled", self.clock(), envelope):
            self._trim_dead("cancelled")
