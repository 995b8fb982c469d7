"""When an enqueue happens relative to the caller's database transaction.

Promise: inside ``transaction.atomic()`` a job is stored only after the
outermost transaction commits (``on_commit``), so a rollback never leaves a
job behind and a job never runs before the data it reads is committed.
Outside a transaction the job is stored at once. Adapters that store jobs
in the same database (``transactional_enqueue``) write the job inside the
caller's transaction instead, which gives the same promise atomically.

Django's ``TestCase`` wraps each test in transactions that never commit;
those do not count as the caller's transaction, so ``perform_later`` in a
test behaves as it would in a request.

A deferred enqueue that fails after the commit (broker down) cannot undo the
commit: the full envelope is logged at ERROR and ``job_enqueue_failed`` is sent.
"""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Iterable

from django.db import transaction

from . import conf, registry, signals
from .adapters import get_adapter
from .envelope import Envelope

if TYPE_CHECKING:
    from .adapters.base import Adapter
    from .job import Job

logger = logging.getLogger("djjobs")


def submit(jobs: list["Job"]) -> None:
    """Serialize every job (all or nothing), then store now or on commit."""
    envelopes = [job.to_envelope() for job in jobs]
    groups: dict[bool, list[Envelope]] = {}
    for job, env in zip(jobs, envelopes):
        groups.setdefault(type(job).enqueue_after_commit, []).append(env)
    for after_commit, group in groups.items():
        submit_envelopes(group, after_commit=after_commit)


def submit_envelopes(envelopes: list[Envelope], *, after_commit: bool, adapter: "Adapter | None" = None) -> None:
    adapter = adapter or get_adapter()
    alias = conf.get("DATABASE")
    if after_commit and not adapter.transactional_enqueue and in_user_transaction(alias):
        transaction.on_commit(lambda: _store_after_commit(adapter, envelopes), using=alias)
    else:
        store(adapter, envelopes)


def in_user_transaction(alias: str = "default") -> bool:
    connection = transaction.get_connection(alias)
    if not connection.in_atomic_block:
        return False
    return not all(getattr(block, "_from_testcase", False) for block in connection.atomic_blocks)


def store(adapter: "Adapter", envelopes: Iterable[Envelope]) -> None:
    envelopes = list(envelopes)
    if len(envelopes) == 1:
        adapter.enqueue(envelopes[0])
    else:
        adapter.enqueue_many(envelopes)
    if signals.job_enqueued.receivers:
        for env in envelopes:
            signals.job_enqueued.send_robust(sender=registry.lookup(env.job), envelope=env)


def _store_after_commit(adapter: "Adapter", envelopes: list[Envelope]) -> None:
    try:
        store(adapter, envelopes)
    except Exception as exc:
        for env in envelopes:
            logger.error("Enqueue after commit failed (%s: %s); the transaction committed but this job was "
                         "NOT stored: %s", type(exc).__name__, exc, env.encode().decode())
            signals.job_enqueue_failed.send_robust(sender=None, envelope=env, exception=exc)
