"""The Redis adapter's ``save_progress`` (djjobs/continuations.py; the contract in
``adapters/base.py``): progress.lua replaces the payload of a job whose lease token still
matches, receiving the two keys it touches in KEYS."""
from __future__ import annotations

from ...envelope import Envelope
from ..base import Claim, split_token


class RedisProgress:
    """Mixed into RedisAdapter (it uses ``run`` and ``keys``)."""

    def save_progress(self, claim: Claim, envelope: Envelope) -> bool:
        job_id, token = split_token(claim)
        return bool(self.run("progress", job_id, token, envelope.encode(),
                             keys=[self.keys.leases, self.keys.payloads]))
