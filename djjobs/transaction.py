"""When an enqueue happens relative to the caller's database transaction.

Promise: inside ``transaction.atomic()`` a job is stored only after the
outermost transaction commits (``on_commit``), so a rollback never leaves a
job behind and a job never runs before the data it reads is committed. That
holds on every database alias: with transactions open on several, the job is
stored once all of them have committed. Outside a transaction the job is
stored at once. Adapters that store jobs in the same database
(``transactional_enqueue``) write the job inside the caller's transaction
instead, which gives the same promise atomically, when that is the only open
transaction. A deferred job is encoded (and checked against the payload
limit) before the commit, so a job that cannot be stored fails in the caller.

Django's ``TestCase`` wraps each test in transactions that never commit;
those do not count as the caller's transaction, so ``perform_later`` in a
test behaves as it would in a request.

A deferred enqueue that fails after the commit (broker down) cannot undo the
commit: the full envelope is logged at ERROR and ``job_enqueue_failed`` is sent.
"""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Iterable

import orjson
from django.db import connections, transaction

from . import registry, signals
from .adapters import get_adapter
from .envelope import Envelope
from .errors import EnqueueError
from .masking import masked

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
    if not after_commit:
        store(adapter, envelopes)
        return
    open_aliases = [c.alias for c in connections.all(initialized_only=True) if in_user_transaction(c.alias)]
    own = adapter.setting("DATABASE") if adapter.transactional_enqueue else None
    if not open_aliases or open_aliases == [own]:
        store(adapter, envelopes)  # now: no transaction, or the job joins the only one open
        return
    for env in envelopes:  # fail in the caller, before the commit, if a job cannot be stored
        adapter.encode(env)
    waiting = [len(open_aliases)]

    def committed() -> None:  # stored once every open transaction has committed
        waiting[0] -= 1
        if waiting[0] == 0:
            _store_after_commit(adapter, envelopes)

    for alias in open_aliases:
        transaction.on_commit(committed, using=alias)


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
        if adapter.name == "inline" and not isinstance(exc, EnqueueError):
            raise  # the job ran, in the caller, and failed for good: its error, as outside atomic()
        stored = set(getattr(exc, "stored", ()))  # a bulk refused part way says which it stored
        for env in envelopes:
            if env.job_id in stored:
                continue
            logger.error("Enqueue after commit failed (%s: %s); the transaction committed but this job was "
                         "NOT stored: %s", type(exc).__name__, exc, _printable(env))
            signals.job_enqueue_failed.send_robust(sender=None, envelope=env, exception=exc)


def _printable(env: Envelope) -> str:
    """The envelope to re-enqueue by hand, arguments with secret-looking names masked
    (job_enqueue_failed receivers get it whole)."""
    try:
        return orjson.dumps({**orjson.loads(env.encode()), "args": masked(env.args),
                             "kwargs": masked(env.kwargs)}).decode()
    except Exception:
        return env.describe()
