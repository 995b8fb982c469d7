"""Runs each job synchronously in the caller, at enqueue time (scripts, tests).

``wait``/``wait_until`` are ignored: a scheduled job runs at once. Retries and
``retry_job`` also run again at once, without waiting (at most 100 runs in a
row), and a job that fails for good re-raises its exception to the caller.
Nothing is stored, so there is nothing to inspect: the inspection methods
report empty state.
"""
from __future__ import annotations

from typing import Sequence

from ..envelope import Envelope
from .base import Adapter, Counts


class InlineAdapter(Adapter):
    name = "inline"
    supports_fetch = False

    def enqueue(self, envelope: Envelope) -> None:
        from ..execution import perform_in_caller
        self.encode(envelope)  # same limits as every adapter
        perform_in_caller(envelope.copy(run_at=None), retry_later=False)

    def enqueue_many(self, envelopes: Sequence[Envelope]) -> None:
        for env in envelopes:
            self.enqueue(env)

    def counts(self) -> Counts:
        return Counts()

    def queues(self) -> list:
        return []

    def workers(self) -> list:
        return []
