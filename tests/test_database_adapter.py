"""Database adapter specifics: transactional enqueue, LISTEN/NOTIFY wake-up, pruning,
and a PostgreSQL restart under a running worker."""
import threading
import time

import pytest
from django.db import connections, transaction

from djjobs.adapters import use_adapter
from djjobs.adapters.database import DatabaseAdapter
from djjobs.envelope import Envelope
from djjobs.models import JobRow
from tests.fixtures.core import check_recovery_leaves_a_lease_renewed_meanwhile
from tests.fixtures.database import require_postgres
from tests.jobs import EchoJob

pytestmark = pytest.mark.django_db(transaction=True, databases="__all__")


@pytest.fixture(params=["default", "postgres"], ids=["sqlite", "postgres"])
def alias(request):
    if request.param == "postgres":
        require_postgres()
    return request.param


def rows(alias):
    return JobRow.objects.using(alias).filter(state="ready").count()


def test_enqueue_joins_the_callers_transaction(alias):
    adapter = DatabaseAdapter({"DATABASE": alias})
    with use_adapter(adapter):
        with transaction.atomic(using=alias):
            job = EchoJob.perform_later("committed")
            assert rows(alias) == 1  # written inside the transaction, not deferred to on_commit
        assert adapter.get(job.job_id).state == "ready"
        with pytest.raises(RuntimeError):
            with transaction.atomic(using=alias):
                EchoJob.perform_later("rolled back")
                raise RuntimeError
    assert rows(alias) == 1


def test_an_uncommitted_job_is_invisible_to_workers():
    """PostgreSQL: a worker skips rows of an open transaction. (SQLite: the writer holds
    the database lock until commit, so a concurrent claim waits for it instead.)"""
    require_postgres()
    alias = "postgres"
    adapter = DatabaseAdapter({"DATABASE": alias})
    seen = []
    with use_adapter(adapter), transaction.atomic(using=alias):
        EchoJob.perform_later("pending")
        worker = threading.Thread(target=lambda: (seen.extend(adapter.fetch(["default"], 10, 0, "w")),
                                                  connections[alias].close()))
        worker.start()
        worker.join(20)
    assert seen == []
    assert len(adapter.fetch(["default"], 10, 0, "w")) == 1


def test_notify_wakes_an_idle_fetch_on_postgres():
    require_postgres()
    # The polling fallback is set far beyond the wait: only a NOTIFY can end it early.
    adapter = DatabaseAdapter({"DATABASE": "postgres", "FETCH_POLL_INTERVAL": 60})
    result = {}

    def fetch():
        started = time.monotonic()
        result["claims"] = adapter.fetch(["default"], 5, 30, "w")
        result["took"] = time.monotonic() - started
        connections["postgres"].close()

    waiter = threading.Thread(target=fetch)
    waiter.start()
    time.sleep(0.5)
    adapter.enqueue(Envelope(job=EchoJob.job_name))
    waiter.join(40)
    adapter.close()
    assert len(result["claims"]) == 1 and result["took"] < 20


def test_bulk_enqueue_joins_the_callers_transaction_and_is_all_or_nothing(alias):
    """perform_all_later is one COPY on PostgreSQL and multi-row INSERTs on SQLite: both
    take part in the caller's transaction, and a bad batch stores none of its jobs."""
    from djjobs.errors import EnqueueError
    adapter = DatabaseAdapter({"DATABASE": alias})
    with pytest.raises(RuntimeError), transaction.atomic(using=alias):
        adapter.enqueue_many([Envelope(job=EchoJob.job_name) for _ in range(50)])
        assert rows(alias) == 50
        raise RuntimeError
    assert rows(alias) == 0
    batch = [Envelope(job=EchoJob.job_name, args=["\x00 ok \U0001f600"]) for _ in range(1500)]
    adapter.enqueue_many(batch)
    assert rows(alias) == 1500
    assert adapter.get(batch[-1].job_id).raw == batch[-1].encode()  # byte-exact, NUL included
    with pytest.raises(EnqueueError, match="same job_id"):
        adapter.enqueue_many([Envelope(job=EchoJob.job_name), batch[0]])
    assert rows(alias) == 1500


def test_finished_jobs_are_kept_then_pruned(alias, clock):
    adapter = DatabaseAdapter({"DATABASE": alias, "FINISHED_RETENTION_SECONDS": 3600})
    adapter.clock = clock
    adapter.enqueue_many([Envelope(job=EchoJob.job_name) for _ in range(5)])
    adapter.complete(adapter.fetch(["default"], 5, 0, "w"))
    assert JobRow.objects.using(alias).filter(state="finished").count() == 5
    assert adapter.prune() == 0
    clock.advance(3601)
    assert adapter.prune() == 5
    assert not JobRow.objects.using(alias).exists()


def test_zero_retention_deletes_at_once(alias):
    adapter = DatabaseAdapter({"DATABASE": alias, "FINISHED_RETENTION_SECONDS": 0})
    adapter.enqueue(Envelope(job=EchoJob.job_name))
    adapter.complete(adapter.fetch(["default"], 1, 0, "w"))
    assert not JobRow.objects.using(alias).exists() and adapter.counts().processed == 1


@pytest.mark.parametrize("retention, left", [(0, 0), (3600, 3)])
def test_ack_folded_into_the_next_fetch(alias, retention, left):
    """The worker's path: acknowledgements ride on the next claim (one statement on PostgreSQL)."""
    adapter = DatabaseAdapter({"DATABASE": alias, "FINISHED_RETENTION_SECONDS": retention})
    adapter.enqueue_many([Envelope(job=EchoJob.job_name) for _ in range(4)])
    done = adapter.fetch(["default"], 3, 0, "w")
    [last] = adapter.fetch(["default"], 3, 0, "w", complete=done)
    assert JobRow.objects.using(alias).filter(state="finished").count() == left
    assert JobRow.objects.using(alias).get(job_id=last.envelope.job_id).state == "running"
    assert adapter.counts().processed == 3 and adapter.history(1)[-1][1] == 3


def test_check_names_a_missing_alias():
    assert DatabaseAdapter({"DATABASE": "nowhere"}).check() == ["DJJOBS['DATABASE'] = 'nowhere' is not in DATABASES."]


def _info(worker_id="w"):
    from djjobs.adapters.base import WorkerInfo
    return WorkerInfo(worker_id, "host", 1, ["default"], 1, time.time())


def test_heartbeat_waits_for_the_write_lock_on_deferred_sqlite(tmp_path):
    """Without ``transaction_mode = "IMMEDIATE"`` SQLite's transactions are deferred: one
    that reads before it writes cannot wait for another writer and fails at once with
    "database is locked". The heartbeat writes first (leases, then the worker row), so it
    waits for the lock like any write and its renewal is not lost."""
    import sqlite3
    connection = connections["default"]
    options = connection.settings_dict["OPTIONS"]
    connection.close()
    connection.settings_dict["OPTIONS"] = {"timeout": 10, "init_command": "PRAGMA journal_mode=WAL;"}
    try:
        adapter = DatabaseAdapter({"DATABASE": "default", "LEASE_SECONDS": 60})
        adapter.heartbeat(_info(), [])  # the worker row exists: the next heartbeat updates it
        adapter.enqueue(Envelope(job=EchoJob.job_name))
        [claim] = adapter.fetch(["default"], 1, 0, "w")
        assert connection.transaction_mode is None  # deferred
        other = sqlite3.connect(connection.settings_dict["NAME"], timeout=10, isolation_level=None,
                                check_same_thread=False)
        other.execute("BEGIN IMMEDIATE")
        other.execute("UPDATE djjobs_worker SET pid = 2")
        committer = threading.Timer(0.5, other.execute, ["COMMIT"])
        committer.start()
        try:
            adapter.heartbeat(_info(), [claim])
        finally:
            committer.join()
            other.close()
        row = JobRow.objects.using("default").get(job_id=claim.envelope.job_id)
        assert row.lease_until > time.time() + 50 and [w.pid for w in adapter.workers()] == [1]
    finally:
        connection.close()
        connection.settings_dict["OPTIONS"] = options


def test_recovery_leaves_a_lease_renewed_meanwhile(alias, clock):
    check_recovery_leaves_a_lease_renewed_meanwhile(DatabaseAdapter({"DATABASE": alias, "LEASE_SECONDS": 10}),
                                                    clock, 10)


def test_trimming_the_dead_set_keeps_a_job_retried_meanwhile(alias):
    """The trim reads the oldest dead jobs' ids, then deletes them: one the admin retried
    in between is ready by then and must stay."""
    adapter = DatabaseAdapter({"DATABASE": alias, "DEAD_MAX_JOBS": 1})
    adapter.enqueue_many([Envelope(job=EchoJob.job_name) for _ in range(2)])
    claims = adapter.fetch(["default"], 2, 0, "w")
    for claim in claims:
        adapter._move(claim, "dead", claim.envelope, None, failed=True)
    oldest = claims[0].envelope.job_id
    JobRow.objects.using(alias).filter(job_id=oldest).update(updated_at=time.time() - 100)
    retried = []

    def retry_after_the_read(execute, sql, params, many, context):
        result = execute(sql, params, many, context)
        if not retried and sql.lstrip().upper().startswith("SELECT") and "ORDER BY" in sql and "updated_at" in sql:
            retried.append(adapter.retry_now([oldest]))
        return result

    with connections[alias].execute_wrapper(retry_after_the_read):
        adapter._trim_dead()
    assert retried == [1]
    assert adapter.get(oldest).state == "ready"


def test_recovery_sends_a_malformed_payload_to_the_dead_set(alias, clock):
    """A payload that parses as JSON but has a field of the wrong type (here the version)
    is a poison payload like any other: recovery moves it to the dead set instead of
    failing on it at every poll and leaving the jobs behind it running."""
    adapter = DatabaseAdapter({"DATABASE": alias, "LEASE_SECONDS": 10})
    adapter.clock = clock
    bad = Envelope(job=EchoJob.job_name).encode().replace(b'"version":1', b'"version":"1"')
    adapter.enqueue_raw(bad, "default")
    adapter.enqueue(Envelope(job=EchoJob.job_name))
    claims = adapter.fetch(["default"], 2, 0, "w")
    assert sorted(c.envelope is None for c in claims) == [False, True]
    clock.advance(11)
    assert adapter.recover_expired() == 2
    counts = adapter.counts()
    assert (counts.dead, counts.enqueued, counts.busy) == (1, 1, 0)


def test_heartbeat_skips_a_row_an_acknowledgement_holds():
    """PostgreSQL: the heartbeat's renewal and a worker's acknowledgement lock the same
    rows in different orders; the renewal skips a locked row instead of waiting for it
    (waiting could deadlock). The job is finishing; the next heartbeat renews it if not."""
    require_postgres()
    import psycopg
    adapter = DatabaseAdapter({"DATABASE": "postgres", "LEASE_SECONDS": 60})
    adapter.enqueue_many([Envelope(job=EchoJob.job_name) for _ in range(2)])
    held, free = adapter.fetch(["default"], 2, 0, "w")
    params = connections["postgres"].get_connection_params()
    params.pop("cursor_factory", None)
    with psycopg.connect(**params) as other:
        other.execute("SELECT 1 FROM djjobs_job WHERE job_id = %s FOR UPDATE", [held.envelope.job_id])
        before = {r.job_id: r.lease_until for r in JobRow.objects.using("postgres").all()}
        beat = threading.Thread(target=lambda: (adapter.heartbeat(_info(), [held, free]),
                                                connections["postgres"].close()))
        beat.start()
        beat.join(10)
        blocked = beat.is_alive()
        other.rollback()
    beat.join(10)
    assert not blocked, "the heartbeat waited for a row lock"
    after = {r.job_id: r.lease_until for r in JobRow.objects.using("postgres").all()}
    assert after[held.envelope.job_id] == before[held.envelope.job_id]
    assert after[free.envelope.job_id] > before[free.envelope.job_id]


def test_check_asks_for_read_committed_on_postgres():
    require_postgres()
    import psycopg
    options = connections["postgres"].settings_dict.setdefault("OPTIONS", {})
    try:
        options["isolation_level"] = psycopg.IsolationLevel.SERIALIZABLE
        [problem] = DatabaseAdapter({"DATABASE": "postgres"}).check()
        assert "isolation_level SERIALIZABLE" in problem and "READ COMMITTED" in problem
        options["isolation_level"] = psycopg.IsolationLevel.READ_COMMITTED
        assert DatabaseAdapter({"DATABASE": "postgres"}).check() == []
    finally:
        options.pop("isolation_level", None)


def test_check_advises_immediate_transactions_on_sqlite():
    from django.core.checks import Warning
    from djjobs.checks import check_settings
    options = connections["default"].settings_dict["OPTIONS"]
    assert DatabaseAdapter({"DATABASE": "default"}).advice() == []
    connections["default"].settings_dict["OPTIONS"] = {k: v for k, v in options.items() if k != "transaction_mode"}
    try:
        from django.test import override_settings
        with override_settings(DJJOBS={"ADAPTER": "database"}):
            [warning] = check_settings()
        assert isinstance(warning, Warning) and warning.id == "djjobs.W002" and "IMMEDIATE" in warning.msg
    finally:
        connections["default"].settings_dict["OPTIONS"] = options


def test_cron_tick_claims_are_pruned_after_eight_days(alias, clock):
    from djjobs.models import CronTick
    adapter = DatabaseAdapter({"DATABASE": alias})
    adapter.clock = clock
    assert adapter.claim_tick("every-second", 1.0) and not adapter.claim_tick("every-second", 1.0)
    adapter.prune()
    assert CronTick.objects.using(alias).count() == 1
    clock.advance(8 * 86400 + 3601)
    adapter.prune()
    assert CronTick.objects.using(alias).count() == 0


def test_the_hourly_prune_drops_concurrency_keys_and_rate_windows_no_longer_used(alias):
    from djjobs.models import ConcurrencyKey, RateWindow
    adapter = DatabaseAdapter({"DATABASE": alias})
    job = Envelope(job="tests.jobs.EchoJob", meta={"concurrency": {"key": "k", "limit": 1}})
    adapter.enqueue(job)
    adapter.take_rate("old", 1, 1.0, "m")
    adapter.take_rate("current", 1, 3600.0, "m")
    adapter._ticks_pruned_at = 0
    adapter.prune()
    assert ConcurrencyKey.objects.using(alias).filter(name="k").exists()  # its job is still queued
    [claim] = adapter.fetch(["default"], 1, 0, "w")
    adapter.complete([claim])
    adapter.clock = lambda: time.time() + 5  # "old"'s 1-s window is past
    adapter._ticks_pruned_at = 0
    adapter.prune()
    assert not ConcurrencyKey.objects.using(alias).exists()
    assert list(RateWindow.objects.using(alias).values_list("name", flat=True)) == ["current"]
