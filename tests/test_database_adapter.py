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
