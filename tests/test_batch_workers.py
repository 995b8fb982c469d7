"""Batches run by `runjobs -p 2` on Redis, SQLite and PostgreSQL: callbacks fire exactly once
(counted) while worker processes are SIGKILLed mid-batch and jobs re-run after their
lease expires, when the last jobs of many batches end at the same instant on two
processes, and when a batch is left inconsistent by hand (the poller's repair)."""
import os
import signal
import time

import pytest

from djjobs import Batch, perform_all_later
from djjobs.adapters import use_adapter
from tests.fixtures.worker import wait_for
from tests.worker_jobs import BatchItemJob, BatchNoteJob

pytestmark = [pytest.mark.django_db(transaction=True, databases="__all__")]


def lines(trace):
    return [line.split() for line in trace.read_text().splitlines()] if trace.exists() else []


def callbacks(trace):
    return [f for f in lines(trace) if f[0] == "callback"]


@pytest.mark.timeout(240)
def test_a_1000_job_batch_fires_each_callback_once_with_workers_killed(backend, start_worker, tmp_path):
    trace = str(tmp_path / "trace")
    with use_adapter(backend.adapter):
        with Batch("big", on_complete=BatchNoteJob(trace), on_success=BatchNoteJob(trace),
                   on_death=BatchNoteJob(trace)) as big:
            perform_all_later([BatchItemJob(trace, f"b{i}", 0.01) for i in range(1000)])
        with Batch("small", on_complete=BatchNoteJob(trace), on_success=BatchNoteJob(trace),
                   on_death=BatchNoteJob(trace)) as small:
            perform_all_later([BatchItemJob(trace, f"s{i}", 0.01, i in (3, 7)) for i in range(50)])
        worker = start_worker("-p", "2", "-c", "10")
        kills = 0
        for threshold in (150, 450):  # SIGKILL a worker process twice mid-batch: its claims re-run
            wait_for(lambda: len(lines(tmp_path / "trace")) >= threshold, 90, f"{threshold} jobs to run")
            children = wait_for(worker.children, 30, "worker processes")
            os.kill(children[0], signal.SIGKILL)
            kills += 1
        wait_for(lambda: len(callbacks(tmp_path / "trace")) >= 4, 150, "the callbacks", interval=0.2)
        time.sleep(2 * backend.djjobs["LEASE_SECONDS"] + 1)  # time for any second firing to show
    got = sorted((f[1], f[2]) for f in callbacks(tmp_path / "trace"))
    assert got == sorted([("complete", big.id), ("success", big.id), ("complete", small.id), ("death", small.id)])
    ran = {f[1] for f in lines(tmp_path / "trace") if f[0] == "run"}
    assert ran == {f"b{i}" for i in range(1000)} | {f"s{i}" for i in range(50) if i not in (3, 7)}
    status = backend.adapter.batch_status(big.id)
    assert (status.total, status.pending, status.succeeded, status.failed, status.success) == (1000, 0, 1000, 0, True)
    status = backend.adapter.batch_status(small.id)
    assert (status.total, status.succeeded, status.dead, status.complete) == (50, 48, 2, True)
    assert sorted(backend.adapter.batch_failures(small.id)) == sorted(
        j for j in (r.job_id for r in backend.adapter.jobs("dead", per_page=100).items))
    for f in callbacks(tmp_path / "trace"):
        if f[1] == "complete" and f[2] == big.id:
            assert f[3:] == ["1000", "1000", "0"]
    assert kills == 2


@pytest.mark.timeout(180)
def test_last_jobs_ending_at_the_same_instant_on_two_processes_fire_once(backend, start_worker, tmp_path):
    """60 batches of 2 jobs, every job ending at the same 50 ms boundary of the clock as the
    others running then: the two last jobs of a batch often end together on two processes."""
    trace = str(tmp_path / "trace")
    with use_adapter(backend.adapter):
        ids = []
        for b in range(60):
            with Batch(on_complete=BatchNoteJob(trace)) as batch:
                perform_all_later([BatchItemJob(trace, f"{b}-{i}", 0.05) for i in range(2)])
            ids.append(batch.id)
        start_worker("-p", "2", "-c", "4")
        wait_for(lambda: len(callbacks(tmp_path / "trace")) >= 60, 120, "60 callbacks", interval=0.2)
        time.sleep(1)
    fired = [f[2] for f in callbacks(tmp_path / "trace")]
    assert sorted(fired) == sorted(ids), "a batch's on_complete fired twice or never"


@pytest.mark.timeout(120)
def test_the_poller_repairs_a_batch_whose_job_vanished(backend, start_worker, tmp_path):
    trace = str(tmp_path / "trace")
    with use_adapter(backend.adapter):
        with Batch(on_complete=BatchNoteJob(trace)) as batch:
            kept = BatchItemJob.perform_later(trace, "kept", 0.01)
            lost = BatchItemJob.set(wait=3600).perform_later(trace, "lost", 0.01)
    _vanish(backend, lost.job_id)  # gone behind djjobs' back: no step settled it
    start_worker("-c", "2")
    wait_for(lambda: callbacks(tmp_path / "trace"), 60, "the repaired batch's callback", interval=0.2)
    status = backend.adapter.batch_status(batch.id)
    assert (status.succeeded, status.discarded, status.complete) == (1, 1, True)
    assert kept.job_id not in backend.adapter.batch_failures(batch.id)


def _vanish(backend, job_id):
    if backend.name == "redis":
        client, p = backend.adapter.client, backend.adapter.keys.prefix
        client.zrem(f"{p}:scheduled", job_id)
        client.hdel(f"{p}:payloads", job_id)
        client.hdel(f"{p}:meta", job_id)
    else:
        from django.db import connections
        with connections[backend.djjobs["DATABASE"]].cursor() as cursor:
            cursor.execute("DELETE FROM djjobs_job WHERE job_id = %s", [job_id])
