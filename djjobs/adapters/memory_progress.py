"""Progress in the memory adapter (the contract: ``adapters/base.py``, ``save_progress``)."""
from __future__ import annotations

from ..envelope import Envelope
from .base import Claim


class MemoryProgress:
    """Mixed into MemoryAdapter (it uses ``_cond`` and ``_owned``)."""

    def save_progress(self, claim: Claim, envelope: Envelope) -> bool:
        raw = envelope.encode()  # before the lock: a payload that cannot be encoded changes nothing
        with self._cond:
            rec = self._owned(claim)
            if rec is None:
                return False
            rec.raw = raw
            return True
