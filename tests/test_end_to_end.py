"""Real processes on every durable adapter: django.tasks through a running worker, and
several cron schedulers enqueueing each tick exactly once."""
import collections
import json
import os
import signal
import subprocess
import sys
import time
from datetime import timedelta

import pytest
from django.tasks import TaskResultStatus
from django.utils import timezone

from djjobs.adapters import use_adapter
from tests import tasks
from tests.fixtures.worker import ROOT, Backend, wait_for

pytestmark = [pytest.mark.timeout(180), pytest.mark.django_db(transaction=True, databases="__all__")]


def refreshed(result, status):
    result.refresh()
    return result.status == status


def test_tasks_run_on_a_worker(backend, start_worker):
    with use_adapter(backend.adapter):
        high = tasks.important.using(priority=50, queue_name="default").enqueue("high")
        low = tasks.important.using(priority=-50, queue_name="default").enqueue("low")
        added = tasks.add.enqueue(20, 22)
        later = tasks.add.using(run_after=timezone.now() + timedelta(seconds=2)).enqueue(1, 1)
        failed = tasks.explode.enqueue()
        doubled = tasks.async_double.enqueue(4)
        context = tasks.with_context.enqueue("ctx")
        start_worker("-c", "1")
        for result in (high, low, added, later, doubled, context):
            wait_for(lambda r=result: refreshed(r, TaskResultStatus.SUCCESSFUL), 60, f"task {result.id}")
        wait_for(lambda: refreshed(failed, TaskResultStatus.FAILED), 60, "the failing task")
        assert added.return_value == 42 and doubled.return_value == 8
        assert context.return_value == {"attempt": 1, "id": context.id}
        assert high.started_at <= low.started_at  # priority order on one thread
        assert later.started_at >= later.enqueued_at + timedelta(seconds=1.5)  # deferred
        assert failed.errors[0].exception_class is ValueError and failed.finished_at is not None
        assert added.worker_ids and added.worker_ids[0] != ""
        assert tasks.add.get_result(added.id).return_value == 42


def test_several_schedulers_enqueue_each_tick_once(backend, tmp_path):
    config = {**backend.djjobs, "CRON": {"every-second": {"cron": "* * * * * *", "job": "tests.jobs.EchoJob",
                                                          "args": ["tick"], "queue": "low"}}}
    env = dict(os.environ, DJANGO_SETTINGS_MODULE="tests.worker_settings", DJJOBS_TEST_DJJOBS=json.dumps(config),
               PYTHONPATH=str(ROOT))
    if backend.databases:
        env["DJJOBS_TEST_DATABASES"] = json.dumps(backend.databases)
    procs = [subprocess.Popen([sys.executable, "manage.py", "jobs_cron"], cwd=ROOT, env=env,
                              stdout=open(tmp_path / f"cron{i}.log", "wb"), stderr=subprocess.STDOUT,
                              start_new_session=True) for i in range(3)]
    try:
        time.sleep(6)
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        codes = []
        for proc in procs:
            try:
                codes.append(proc.wait(20))
            except subprocess.TimeoutExpired:
                proc.kill()
                codes.append(proc.wait(5))
    logs = "".join((tmp_path / f"cron{i}.log").read_text() for i in range(3))
    assert codes == [0, 0, 0], logs
    jobs = backend.adapter.jobs("ready", queue="low", per_page=1000).items
    ticks = collections.Counter(r.envelope.scheduled_at for r in jobs)
    assert len(ticks) >= 3, [p.read_text() for p in tmp_path.iterdir()]
    assert max(ticks.values()) == 1, ticks  # never twice
    seconds = sorted(ticks)
    assert all(b - a == 1 for a, b in zip(seconds, seconds[1:]))  # and none skipped
    assert logs.count("Cron every-second: enqueued") == len(jobs)


def test_runjobs_with_cron_schedules_and_runs_in_one_process(backend, tmp_path):
    from tests.fixtures.worker import Worker
    from tests.worker_jobs import RecordJob
    trace = tmp_path / "trace"
    config = {**backend.djjobs, "CRON": {"heartbeat": {"cron": "* * * * * *", "job": RecordJob.job_name,
                                                       "args": [str(trace), "tick"]}}}
    worker = Worker(Backend(backend.name, config, backend.databases), tmp_path / "worker.log", ["--cron", "-c", "2"])
    try:
        wait_for(lambda: trace.exists() and trace.read_text().count("ran tick") >= 2, 30, "two cron runs")
    finally:
        worker.stop()
    assert "Cron heartbeat: enqueued" in worker.output()
