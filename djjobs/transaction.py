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

Unique jobs (:mod:`djjobs.uniqueness`): the adapter reports the enqueues it did not store
because their key is held; each such Job gets the holder's ``job_id`` and ``duplicate``
True (``unique_conflict = "skip"``), or DuplicateJob is raised (``"raise"``) once the
others are stored. After a commit, a DuplicateJob cannot reach the caller: it is logged at
WARNING and ``job_enqueue_failed`` is sent with it.
"""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Callable, Iterable

import orjson
from django.db import connections, transaction

from . import registry, signals
from .adapters import get_adapter
from .batch_status import current as current_batch
from .envelope import Envelope
from .errors import DuplicateJob, EnqueueError
from .masking import masked
from .uniqueness import lock_of

if TYPE_CHECKING:
    from .adapters.base import Adapter
    from .job import Job

logger = logging.getLogger("djjobs")


def submit(jobs: list["Job"]) -> None:
    """Serialize every job (all or nothing), then store now or on commit."""
    envelopes = [job.to_envelope() for job in jobs]
    groups: dict[bool, list[Envelope]] = {}
    unique: dict[str, "Job"] = {}
    batch = current_batch()  # the jobs of a batch opened after the commit are stored after it too
    deferred = batch is not None and batch.deferred
    for job, env in zip(jobs, envelopes):
        groups.setdefault(type(job).enqueue_after_commit or deferred, []).append(env)
        if env.meta and "unique" in env.meta:
            unique[env.job_id] = job
    settle = _settler(unique) if unique else None
    for after_commit, group in groups.items():
        submit_envelopes(group, after_commit=after_commit, settle=settle)


def _settler(unique: dict[str, "Job"]) -> "Callable[[dict[str, str]], None]":
    """What to do with the duplicates the adapter reports: point each duplicate Job at the
    job holding its key, and raise DuplicateJob for "raise" (after the others are stored)."""
    def settle(duplicates: dict[str, str]) -> None:
        refused = None
        for new_id, holder in duplicates.items():
            job = unique[new_id]
            job.job_id, job.duplicate = holder, True
            lock = lock_of(job.envelope.meta)
            if refused is None and lock is not None and lock.conflict == "raise":
                refused = DuplicateJob(f"{type(job).__qualname__} was not enqueued: job {holder} holds its uniqueness "
                                       f"key {lock.key!r} (unique_conflict = 'raise'). Catch DuplicateJob, or use "
                                       "unique_conflict = 'skip' to get the holder back instead.",
                                       job_id=holder, key=lock.key)
        if refused is not None:
            raise refused
    return settle


def submit_envelopes(envelopes: list[Envelope], *, after_commit: bool, adapter: "Adapter | None" = None,
                     settle: "Callable[[dict[str, str]], None] | None" = None) -> None:
    """Store now, or once the caller's transactions commit; ``settle`` receives the
    duplicates the adapter reported (:func:`store`), if any."""
    adapter = adapter or get_adapter()
    if not after_commit:
        _settle(settle, store(adapter, envelopes))
        return
    open_aliases = commit_aliases(adapter)
    if not open_aliases:
        _settle(settle, store(adapter, envelopes))  # now: no transaction, or the job joins the only one open
        return
    for env in envelopes:  # fail in the caller, before the commit, if a job cannot be stored
        adapter.encode(env)
    on_commit_of(open_aliases, lambda: _store_after_commit(adapter, envelopes, settle))


def commit_aliases(adapter: "Adapter") -> list[str]:
    """The database aliases whose open transactions a deferred store waits for; none when
    it happens now (no transaction, or only the adapter's own, which it joins)."""
    open_aliases = [c.alias for c in connections.all(initialized_only=True) if in_user_transaction(c.alias)]
    own = adapter.setting("DATABASE") if adapter.transactional_enqueue else None
    return [] if open_aliases == [own] else open_aliases


def on_commit_of(aliases: list[str], fn: "Callable[[], None]") -> None:
    """Call ``fn`` once every transaction open on ``aliases`` has committed (never, if one
    rolls back). Calls registered in order run in that order."""
    waiting = [len(aliases)]

    def committed() -> None:
        waiting[0] -= 1
        if waiting[0] == 0:
            fn()

    for alias in aliases:
        transaction.on_commit(committed, using=alias)


def in_user_transaction(alias: str = "default") -> bool:
    connection = transaction.get_connection(alias)
    if not connection.in_atomic_block:
        return False
    return not all(getattr(block, "_from_testcase", False) for block in connection.atomic_blocks)


def store(adapter: "Adapter", envelopes: Iterable[Envelope]) -> dict[str, str]:
    """Store ``envelopes``; returns {job id: holder's job id} for the unique ones not stored
    because their key is held (``job_enqueued`` is sent for the others only)."""
    envelopes = list(envelopes)
    if len(envelopes) == 1:
        holder = adapter.enqueue(envelopes[0])
        duplicates = {envelopes[0].job_id: holder} if holder else {}
    else:
        duplicates = adapter.enqueue_many(envelopes) or {}
    if signals.job_enqueued.receivers:
        for env in envelopes:
            if env.job_id not in duplicates:
                signals.job_enqueued.send_robust(sender=registry.lookup(env.job), envelope=env)
    return duplicates


def _settle(settle, duplicates: dict[str, str]) -> None:
    if duplicates and settle is not None:
        settle(duplicates)


def _store_after_commit(adapter: "Adapter", envelopes: list[Envelope],
                        settle: "Callable[[dict[str, str]], None] | None") -> None:
    try:
        duplicates = store(adapter, envelopes)
    except Exception as exc:
        _report_unstored(adapter, envelopes, exc)
        return
    try:
        _settle(settle, duplicates)
    except DuplicateJob as exc:
        logger.warning("Enqueue after commit: %s", exc)
        env = next(e for e in envelopes if e.job_id in duplicates)
        signals.job_enqueue_failed.send_robust(sender=None, envelope=env, exception=exc)


def _report_unstored(adapter: "Adapter", envelopes: list[Envelope], exc: Exception) -> None:
    if adapter.name == "inline" and not isinstance(exc, EnqueueError):
        raise exc  # the job ran, in the caller, and failed for good: its error, as outside atomic()
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
