"""``djjobs.status(job_id)`` and ``manage.py jobs <subcommand>`` (docs/cli.md), on the test
adapter and on real storage: SQLite through the database adapter, and a real redis-server.
Commands run through ``call_command`` where the output is what matters, and as real
``manage.py`` processes where exit statuses, a terminal (or its absence) and stdin matter.
Messages are asserted by what they say."""
from __future__ import annotations

import json
import os
import pty
import re
import select
import subprocess
import sys
import time
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

import djjobs
from djjobs import Batch, Job
from djjobs.adapters import use_adapter
from djjobs.adapters.base import WorkerInfo
from djjobs.adapters.database import DatabaseAdapter
from djjobs.adapters.inline import InlineAdapter
from djjobs.adapters.redis import RedisAdapter
from djjobs.envelope import Envelope
from djjobs.testing import use_test_adapter
from tests.fixtures.worker import ROOT, Backend, command_env, wait_for
from tests.jobs import EchoJob, MailerJob


class LoginJob(Job):
    def perform(self, email, password, *, api_token=None, note=""):
        pass


class OtherJob(Job):
    def perform(self):
        pass


STORES = ["test", "database-sqlite", "redis"]


@pytest.fixture(autouse=True)
def _close_connections():
    """Close this thread's database connections after each test (after its database
    fixtures): one left open makes a later test without database access fail as soon as
    anything checks the connection (the worker's processor does, after every job)."""
    yield
    from django.db import connections
    connections.close_all()


@pytest.fixture(params=STORES)
def store(request):
    """The adapter every enqueue and every command of the test uses."""
    if request.param == "test":
        with use_test_adapter() as adapter:
            yield adapter
        return
    if request.param == "database-sqlite":
        adapter = request.getfixturevalue("database_sqlite_adapter")
    else:
        adapter = request.getfixturevalue("redis_adapter")
    with use_adapter(adapter):
        yield adapter


def jobs(*args: str) -> str:
    out = StringIO()
    call_command("jobs", *args, stdout=out)
    return out.getvalue()


def failing(*args: str) -> str:
    with pytest.raises(CommandError) as info:
        jobs(*args)
    return str(info.value)


def claim(adapter, worker_id="host:1:w1", queue="default"):
    [claimed] = adapter.fetch([queue], 1, 0, worker_id)
    return claimed


def report_busy(adapter, claimed, worker_id="host:1:w1"):
    """What a worker's supervisor does: register the worker with the job it runs."""
    adapter.heartbeat(WorkerInfo(worker_id, "host", 1, ["default"], 2, time.time(),
                                 busy=[{"job_id": claimed.envelope.job_id, "job": claimed.envelope.job,
                                        "queue": "default", "started_at": time.time() - 3}]), [claimed])


def dead_job(adapter, *args, **kwargs):
    job = LoginJob.perform_later(*args, **kwargs)
    claimed = claim(adapter)
    env = claimed.envelope.copy(executions=1, error={"class": "builtins.ValueError", "message": "bad login",
                                                     "traceback": "Traceback (most recent call last):\n  boom\n",
                                                     "failed_at": time.time()})
    adapter.kill(claimed, env)
    return job


# --- djjobs.status -------------------------------------------------------------


def test_status_says_where_a_job_is_in_every_state(store):
    ready = EchoJob.perform_later(1)
    assert (djjobs.status(ready.job_id).state, djjobs.status(ready.job_id).job_class) == ("ready", EchoJob.job_name)
    later = EchoJob.set(wait=600, priority=3).perform_later(2)
    found = djjobs.status(later.job_id)
    assert (found.state, found.priority) == ("scheduled", 3)
    assert abs(found.run_at.timestamp() - (time.time() + 600)) < 5
    waiting = EchoJob.set(after=[later]).perform_later(3)
    assert djjobs.status(waiting.job_id).state == "waiting"

    running = claim(store)
    found = djjobs.status(ready.job_id)
    assert found.state == "running" and found.attempts == 0
    report_busy(store, running)
    found = djjobs.status(ready.job_id)
    assert (found.state, found.worker_id) == ("running", "host:1:w1")
    assert abs(found.started_at.timestamp() - (time.time() - 3)) < 2

    store.retry(running, running.envelope.copy(executions=1, error={"class": "builtins.OSError", "message": "flaky",
                                                                    "traceback": "", "failed_at": time.time()}),
                time.time() + 300)
    found = djjobs.status(ready.job_id)
    assert (found.state, found.attempts, found.error["message"]) == ("retry", 1, "flaky")

    dead = dead_job(store, "a@b.c", "pw")
    found = djjobs.status(dead.job_id)
    assert (found.state, found.error["class"], found.ended_at is not None) == ("dead", "builtins.ValueError", True)

    assert djjobs.cancel(later.job_id) == "cancelled"
    assert djjobs.status(later.job_id).state == "cancelled"
    assert djjobs.status("no-such-id").state == "unknown" and not djjobs.status("no-such-id").known


def test_a_job_class_status_reads_only_its_own_jobs(store):
    job = EchoJob.perform_later(1)
    assert EchoJob.status(job.job_id).state == "ready"
    assert OtherJob.status(job.job_id).state == "unknown"
    with pytest.raises(TypeError, match="job id"):
        djjobs.status(job)


def test_a_finished_job_is_finished_on_the_database_adapter_and_unknown_elsewhere(store):
    job = EchoJob.perform_later(1)
    store.complete([claim(store)])
    expected = "finished" if isinstance(store, DatabaseAdapter) else "unknown"
    assert djjobs.status(job.job_id).state == expected
    if expected == "unknown":
        message = failing("status", job.job_id)
        assert ("keeps no record of jobs that succeeded" if store.durable else "none once they have run") in message
    else:
        assert "Job %s: finished" % job.job_id in jobs("status", job.job_id)


def test_the_inline_adapter_keeps_no_job_to_report():
    with use_adapter(InlineAdapter()):
        job = EchoJob.perform_later(1)
        assert djjobs.status(job.job_id).state == "unknown"
        assert "only in the memory of the process that enqueued them" in failing("status", job.job_id)
        message = failing("pause", "default")
        assert "inline adapter cannot pause queues" in message and "'redis' or 'database'" in message


# --- jobs status / show --------------------------------------------------------


def test_jobs_status_of_one_job_in_text_and_json(store):
    job = MailerJob.set(priority=2).perform_later("ann@example.com")
    text = jobs("status", job.job_id)
    assert f"Job {job.job_id}: ready" in text and "Queue: mailers" in text and "Priority: 2" in text
    data = json.loads(jobs("status", job.job_id, "--json"))
    assert (data["state"], data["job_class"], data["queue"]) == ("ready", MailerJob.job_name, "mailers")
    running = claim(store, queue="mailers")
    report_busy(store, running)
    assert "Worker: host:1:w1" in jobs("status", job.job_id)
    message = failing("status", "nope")
    assert "No job 'nope'" in message and "Check the id" in message


def test_jobs_status_without_an_id_is_jobs_status(store):
    EchoJob.perform_later(1)
    overview = jobs("status")
    out = StringIO()
    call_command("jobs_status", stdout=out)
    assert out.getvalue() == overview
    assert re.search(r"default\s+1\s", overview) and "Enqueued: 1" in overview
    data = json.loads(jobs("status", "--json"))
    assert data["counts"]["enqueued"] == 1 and [q["name"] for q in data["queues"]] == ["default"]


def test_show_masks_secret_arguments_and_shows_the_error_and_traceback(store):
    job = dead_job(store, "ann@example.com", "hunter2", api_token="tok-123", note={"secret": "s3"})
    text = jobs("show", job.job_id)
    assert "hunter2" not in text and "tok-123" not in text and "s3" not in text
    assert "ann@example.com" in text and text.count("********") == 3
    assert "Error: builtins.ValueError: bad login" in text and "Traceback:" in text and "boom" in text
    data = json.loads(jobs("show", job.job_id, "--json"))
    assert data["payload"]["args"] == ["ann@example.com", "********"]
    assert data["payload"]["kwargs"]["api_token"] == "********" and data["status"]["state"] == "dead"
    assert "No job 'missing'" in failing("show", "missing")


def test_show_a_payload_that_does_not_decode(store):
    store.enqueue_raw(b'{"not": "an envelope", "password": "pw1"}', "default")
    [record] = store.jobs("ready").items
    text = jobs("show", record.job_id) if record.job_id else ""
    assert "does not decode" in text and "pw1" not in text and "********" in text


# --- enqueue -------------------------------------------------------------------


def test_enqueue_a_registered_class_by_name_with_options(store):
    text = jobs("enqueue", EchoJob.job_name, '[1, "two"]', "--queue", "low", "--priority", "4", "--wait", "120")
    job_id = re.search(r"as job (\w+)", text).group(1)
    found = djjobs.status(job_id)
    assert (found.state, found.queue, found.priority, found.job_class) == ("scheduled", "low", 4, EchoJob.job_name)
    assert "to run at" in text
    text = jobs("enqueue", MailerJob.job_name, '{"to": "x@example.com"}')
    job_id = re.search(r"as job (\w+)", text).group(1)
    record = store.get(job_id)
    assert (record.state, record.envelope.kwargs) == ("ready", {"to": "x@example.com"})


def test_enqueue_refuses_what_is_not_a_registered_job_and_bad_arguments(store):
    message = failing("enqueue", "tests.jobs.EchoJbo")
    assert "is not a registered Job class" in message and "Did you mean 'tests.jobs.EchoJob'" in message
    message = failing("enqueue", "os.system", '["touch /tmp/x"]')
    assert "'os.system' is not a registered Job class" in message and "JOB_MODULES" in message
    assert "not valid JSON" in failing("enqueue", EchoJob.job_name, "[1,")
    assert "not a JSON int" in failing("enqueue", EchoJob.job_name, "5")
    message = failing("enqueue", MailerJob.job_name, '{"too": 1}')
    assert "do not fit tests.jobs.MailerJob.perform(to)" in message
    assert "Malformed queue name" in failing("enqueue", EchoJob.job_name, "--queue", "bad queue")
    assert "--wait must be a number of seconds >= 0" in failing("enqueue", EchoJob.job_name, "--wait", "-1")
    assert store.counts().enqueued == 0 and store.counts().scheduled == 0


# --- retry / cancel / delete ---------------------------------------------------


def test_retry_one_job_or_every_dead_job(store):
    first, second = dead_job(store, "a", "p"), dead_job(store, "b", "p")
    assert "back in its queue" in jobs("retry", first.job_id)
    assert djjobs.status(first.job_id).state == "ready"
    message = failing("retry", first.job_id)
    assert "is ready: only scheduled, retry, dead or cancelled jobs can be retried" in message
    assert "No dead jobs of queue 'low'" in jobs("retry", "--all-dead", "--queue", "low")
    assert "Retried 1 dead job(s)" in jobs("retry", "--all-dead")
    assert djjobs.status(second.job_id).state == "ready"
    assert "Give a JOB_ID or --all-dead" in failing("retry")
    assert "--queue applies to --all-dead only" in failing("retry", first.job_id, "--queue", "low")
    assert "No job 'gone'" in failing("retry", "gone")


def test_cancel_a_waiting_job_and_ask_a_running_one_to_stop(store):
    waiting, running = EchoJob.set(wait=60).perform_later(1), EchoJob.perform_later(2)
    assert "is cancelled: it will not run" in jobs("cancel", waiting.job_id)
    assert djjobs.status(waiting.job_id).state == "cancelled"
    report_busy(store, claim(store))
    assert "is running on worker host:1:w1: it was asked to stop" in jobs("cancel", running.job_id)
    assert "is cancelled: there is nothing to cancel" in failing("cancel", waiting.job_id)
    assert "No job 'gone'" in failing("cancel", "gone")


def test_delete_a_job_but_not_a_running_one(store):
    kept, running = EchoJob.set(wait=60).perform_later(1), EchoJob.perform_later(2)
    claim(store)
    assert f"Deleted job {kept.job_id} (scheduled" in jobs("delete", kept.job_id)
    assert djjobs.status(kept.job_id).state == "unknown"
    message = failing("delete", running.job_id)
    assert "is running: a running job cannot be deleted" in message and "jobs cancel" in message
    assert djjobs.status(running.job_id).state == "running"


# --- pause / resume / workers / batch ------------------------------------------


def test_pause_and_resume_a_queue(store):
    EchoJob.perform_later(1)
    text = jobs("pause", "default")
    assert "Paused queue 'default'" in text and "jobs resume default" in text and "Note" not in text
    assert [q.paused for q in store.queues() if q.name == "default"] == [True]
    assert store.fetch(["default"], 1, 0, "w") == []
    assert "check its spelling" in jobs("pause", "defualt")
    assert "Resumed queue 'default'" in jobs("resume", "default")
    assert "was not paused; nothing changed" in jobs("resume", "default")
    assert "Malformed queue name" in failing("pause", "no spaces")


def test_workers_lists_live_workers_and_their_jobs(store):
    assert "(no live workers)" in jobs("workers")
    job = EchoJob.perform_later(1)
    report_busy(store, claim(store))
    text = jobs("workers")
    assert "host:1:w1" in text and job.job_id in text and EchoJob.job_name in text
    [worker] = json.loads(jobs("workers", "--json"))
    assert worker["worker_id"] == "host:1:w1" and worker["busy"][0]["job_id"] == job.job_id


def test_batch_shows_a_batch_status(store):
    with Batch(description="Import") as batch:
        EchoJob.perform_later(1)
        EchoJob.perform_later(2)
    text = jobs("batch", batch.id)
    assert f"Batch {batch.id}: closed   Import" in text and "Total: 2   Pending: 2" in text
    data = json.loads(jobs("batch", batch.id, "--json"))
    assert (data["total"], data["pending"], data["complete"]) == (2, 2, False)
    message = failing("batch", "f" * 32)
    assert "No batch" in message and "BATCH_RETENTION_SECONDS" in message
    assert "A batch id is a non-empty str" in failing("batch", "x" * 65)


def test_an_unreachable_redis_is_named():
    adapter = RedisAdapter({"REDIS_URL": "redis://127.0.0.1:1/0"})
    try:
        with use_adapter(adapter):
            for args in (("status",), ("status", "abc"), ("workers",), ("pause", "default")):
                message = failing(*args)
                assert "Redis at redis://127.0.0.1:1/0" in message and "redis-server runs" in message
    finally:
        adapter.close()


# --- real processes: exit statuses, terminals, --help ----------------------------


def argv(*args: str) -> list[str]:
    return [sys.executable, "manage.py", *args]


def manage(backend: Backend, *args: str, stdin=subprocess.DEVNULL) -> subprocess.CompletedProcess:
    return subprocess.run(argv(*args), cwd=ROOT, env=command_env(backend), stdin=stdin,
                          capture_output=True, text=True, timeout=60)


#: tests whose commands run in other processes: the test's writes must be committed for them
#: to see (and its connection must hold no transaction: system checks write to SQLite too)
in_processes = pytest.mark.django_db(transaction=True, databases="__all__")


@pytest.fixture(params=["database-sqlite", "redis"])
def process_backend(request) -> Backend:
    return request.getfixturevalue(request.param.replace("-", "_") + "_backend")


def _dead(backend: Backend, n: int) -> list[str]:
    ids = []
    for i in range(n):
        env = Envelope(job=EchoJob.job_name, args=[i])
        backend.adapter.enqueue(env)
        claimed = claim(backend.adapter)
        backend.adapter.kill(claimed, claimed.envelope.copy(error={"class": "E", "message": "m", "traceback": "",
                                                                   "failed_at": time.time()}))
        ids.append(env.job_id)
    return ids


@in_processes
def test_purge_refuses_without_a_terminal_and_deletes_with_yes(process_backend):
    _dead(process_backend, 3)
    done = manage(process_backend, "jobs", "purge", "--dead")
    assert done.returncode == 1, done
    assert "standard input is not a terminal" in done.stderr and "Pass --yes" in done.stderr
    assert process_backend.adapter.counts().dead == 3
    done = manage(process_backend, "jobs", "purge", "--dead", "--yes")
    assert done.returncode == 0 and "Deleted 3 dead job(s)." in done.stdout, done
    assert process_backend.adapter.counts().dead == 0
    done = manage(process_backend, "jobs", "purge")
    assert done.returncode == 1 and "Say what to purge" in done.stderr


def _answer_on_a_terminal(backend: Backend, answer: bytes, *args: str) -> tuple[int, str]:
    master, slave = pty.openpty()
    proc = subprocess.Popen(argv(*args), cwd=ROOT, env=command_env(backend), stdin=slave,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    os.close(slave)
    try:
        out = b""
        deadline = time.monotonic() + 30
        while b"[y/N]" not in out and time.monotonic() < deadline and proc.poll() is None:
            if select.select([proc.stdout], [], [], 0.2)[0]:
                out += os.read(proc.stdout.fileno(), 4096)
        assert b"[y/N]" in out, (out, proc.stderr.read() if proc.poll() is not None else "")
        os.write(master, answer)
        rest, err = proc.communicate(timeout=30)
        return proc.returncode, (out + rest + err).decode()
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@in_processes
def test_purge_asks_on_a_terminal(process_backend):
    for i in range(2):
        process_backend.adapter.enqueue(Envelope(job=EchoJob.job_name, args=[i], queue="low"))
    code, text = _answer_on_a_terminal(process_backend, b"n\n", "jobs", "purge", "low")
    assert code == 1 and "Delete 2 ready job(s) of queue 'low'?" in text and "not confirmed" in text
    assert sum(q.size for q in process_backend.adapter.queues() if q.name == "low") == 2
    code, text = _answer_on_a_terminal(process_backend, b"y\n", "jobs", "purge", "low")
    assert code == 0 and "Deleted 2 ready job(s) of queue 'low'." in text, text
    assert sum(q.size for q in process_backend.adapter.queues() if q.name == "low") == 0


@in_processes
def test_exit_statuses_of_real_runs(process_backend):
    env = Envelope(job=EchoJob.job_name, args=[1])
    process_backend.adapter.enqueue(env)
    done = manage(process_backend, "jobs", "status", env.job_id)
    assert done.returncode == 0 and f"Job {env.job_id}: ready" in done.stdout, done
    done = manage(process_backend, "jobs", "status", "nope", "--json")
    assert done.returncode == 1 and json.loads(done.stdout)["state"] == "unknown" and "No job 'nope'" in done.stderr
    done = manage(process_backend, "jobs", "enqueue", "tests.jobs.MailerJob", '["z@example.com"]')
    assert done.returncode == 0, done
    job_id = re.search(r"as job (\w+)", done.stdout).group(1)
    assert process_backend.adapter.get(job_id).envelope.args == ["z@example.com"]
    done = manage(process_backend, "jobs", "enqueue", "nothing.Here")
    assert done.returncode == 1 and "'nothing.Here' is not a registered Job class" in done.stderr
    done = manage(process_backend, "jobs", "frobnicate")
    assert done.returncode == 2 and "invalid choice: 'frobnicate'" in done.stderr


@in_processes
def test_a_running_job_on_a_real_worker_shows_its_worker(process_backend, tmp_path):
    from tests.fixtures.worker import Worker
    from tests.worker_jobs import RecordJob
    env = Envelope(job=RecordJob.job_name, args=[str(tmp_path / "trace"), "t", 30.0])
    process_backend.adapter.enqueue(env)
    worker = Worker(process_backend, tmp_path / "worker.log", ["-c", "1"])
    try:
        wait_for(lambda: (tmp_path / "trace").exists(), 30, "the job to start")
        with use_adapter(process_backend.adapter):
            found = wait_for(lambda: (s := djjobs.status(env.job_id)).worker_id and s, 10, "the worker's report")
        [registered] = process_backend.adapter.workers()
        assert (found.state, found.worker_id) == ("running", registered.worker_id)
        done = manage(process_backend, "jobs", "status", env.job_id)
        assert f"Worker: {registered.worker_id}" in done.stdout, done
    finally:
        worker.kill()


@in_processes
def test_every_subcommand_has_help_and_runjobs_hides_its_internal_options(database_sqlite_backend):
    backend = database_sqlite_backend
    for sub in ("status", "show", "enqueue", "retry", "cancel", "delete", "purge", "pause", "resume", "workers",
                "batch"):
        done = manage(backend, "jobs", sub, "--help")
        assert done.returncode == 0 and f"manage.py jobs {sub}" in done.stdout, done
    done = manage(backend, "jobs", "--help")
    assert all(sub in done.stdout for sub in ("enqueue", "purge", "workers", "batch"))
    done = manage(backend, "runjobs", "--help")
    assert done.returncode == 0 and "--queue" in done.stdout
    for internal in ("--child", "--pipe-fd", "--claims-fd", "--start-quiet", "(internal)"):
        assert internal not in done.stdout
