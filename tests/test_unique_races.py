"""Unique jobs under real races: many threads in several processes enqueueing one key at
the same instant, and a holder whose worker is SIGKILLed. Every durable adapter."""
import collections
import json
import os
import signal
import subprocess
import sys
import time
import uuid

import pytest

from djjobs.adapters import use_adapter
from tests.fixtures.worker import ROOT, command_env, wait_for
from tests.worker_jobs import UniqueRecordJob

pytestmark = [pytest.mark.timeout(180), pytest.mark.django_db(transaction=True, databases="__all__")]
PROCESSES, THREADS = 3, 20


def test_concurrent_enqueues_of_one_key_store_exactly_one_job(backend):
    key = uuid.uuid4().hex
    start = time.time() + 4  # every process has imported Django and is waiting by then
    procs = [subprocess.Popen([sys.executable, "tests/unique_enqueuer.py", key, str(THREADS), repr(start)],
                              cwd=ROOT, env=command_env(backend), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for _ in range(PROCESSES)]
    outputs = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        outputs.append(json.loads(out.strip().splitlines()[-1]))
    assert [o["errors"] for o in outputs] == [[]] * PROCESSES
    results = [r for o in outputs for r in o["results"]]
    assert len(results) == PROCESSES * THREADS
    stored = [job_id for job_id, duplicate in results if not duplicate]
    assert len(stored) == 1, collections.Counter(duplicate for _, duplicate in results)
    assert {job_id for job_id, _ in results} == set(stored)  # every duplicate names the one stored
    ready = backend.adapter.jobs("ready", per_page=100).items
    assert [r.job_id for r in ready] == stored


def test_a_sigkilled_holder_keeps_its_key_until_recovery_reruns_it(backend, start_worker, tmp_path):
    """The worker running the holder dies with its supervisor (a host lost): nothing settles
    its claim, so the job is 'running' under a lease nobody renews. The key stays held
    through that (a second enqueue is a duplicate), through lease recovery (the job is
    queued again), and is free once the re-run finished."""
    trace = tmp_path / "trace"
    with use_adapter(backend.adapter):
        holder = UniqueRecordJob.perform_later(str(trace), "t", sleep=60)
        first = start_worker("-c", "1")
        wait_for(lambda: trace.exists() and "start t" in trace.read_text(), 60, "the holder to start")
        children = first.children()
        assert children
        for pid in [first.proc.pid, *children]:  # the supervisor first: nothing settles the claim
            os.kill(pid, signal.SIGKILL)
        first.proc.wait(10)
        again = UniqueRecordJob.perform_later(str(trace), "t")
        assert again.duplicate and again.job_id == holder.job_id  # its worker is dead, its lease not yet expired
        start_worker("-c", "1")
        wait_for(lambda: "ran t" in trace.read_text(), 60, "the re-run after lease recovery")
        lines = [line.split() for line in trace.read_text().splitlines()]
        assert [(f[0], f[3]) for f in lines] == [("start", "1"), ("start", "2"), ("ran", "2")]
        free = wait_for(lambda: (job := UniqueRecordJob.perform_later(str(trace), "u")) and not job.duplicate
                        and UniqueRecordJob.set(unique_key="record:t").perform_later(str(trace), "t"), 30,
                        "the key to be free once the re-run was acknowledged")
        assert not free.duplicate
