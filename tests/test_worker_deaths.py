"""A worker process that dies: its supervisor settles its claims from the claim log
(djjobs/worker/claimlog.py). Real processes, real crashes, every durable adapter."""
import collections
import signal
import subprocess
import sys

import pytest

from djjobs.envelope import Envelope
from djjobs.worker.claimlog import ClaimLog
from tests.fixtures.worker import wait_for
from tests.worker_jobs import RecordJob, SegfaultJob

pytestmark = [pytest.mark.timeout(180), pytest.mark.django_db(transaction=True, databases="__all__")]


def trace_lines(path):
    return [line.split() for line in path.read_text().splitlines()] if path.exists() else []


def test_a_segfaulting_job_takes_no_innocent_job_with_it(backend, start_worker, tmp_path):
    """One thread, prefetch on: when the segfaulting job kills its process, the jobs
    claimed beside it were never started. They go back untouched (no death, no execution
    counted) and run once; only the segfaulting job counts deaths, and after
    MAX_WORKER_DEATHS it is a poison pill. Before, every claim of the dead process counted
    a death: prefetched jobs came back with executions 2 and could become poison pills."""
    trace = tmp_path / "trace"
    adapter = backend.adapter
    normal = [Envelope(job=RecordJob.job_name, args=[str(trace), f"n{i}"]) for i in range(400)]
    crash = Envelope(job=SegfaultJob.job_name, args=[str(trace), "crash"])
    adapter.enqueue_many(normal[:200] + [crash] + normal[200:])
    worker = start_worker("-c", "1")
    deaths = adapter.setting("MAX_WORKER_DEATHS")
    wait_for(lambda: adapter.counts().dead == 1 and sum(1 for f in trace_lines(trace) if f[0] == "ran") >= 400,
             120, "the poison pill in the dead set and every other job run", interval=0.2)
    ran = collections.Counter(f[1] for f in trace_lines(trace) if f[0] == "ran")
    assert ran == {e.args[1]: 1 for e in normal}
    executions = {f[1]: int(f[3]) for f in trace_lines(trace) if f[0] == "ran"}
    assert set(executions.values()) == {1}, {k: v for k, v in executions.items() if v != 1}
    [dead] = adapter.jobs("dead").items
    assert dead.job_id == crash.job_id and "poison" in dead.envelope.error["message"]
    assert "SIGSEGV" in dead.envelope.error["message"]
    assert sum(1 for f in trace_lines(trace) if f[:2] == ["start", "crash"]) == deaths
    assert "counted a death" in worker.output()


def test_the_claim_log_survives_the_process_that_wrote_it():
    """The worker writes into memory its supervisor maps too: what it wrote just before a
    SIGKILL is there to read afterwards."""
    log = ClaimLog.create(2)
    script = (
        "import os, signal, sys\n"
        "from djjobs.worker.claimlog import ClaimLog\n"
        "log = ClaimLog(int(sys.argv[1]), 2)\n"
        "log.claimed(['a:1', 'b:2', 'c:3', 'd:4'])\n"
        "log.running(0, 'a:1'); log.finished('a:1')\n"
        "log.running(1, 'b:2')\n"
        "log.running(0, 'c:3')\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n")
    proc = subprocess.run([sys.executable, "-c", script, str(log.fd)], pass_fds=(log.fd,), timeout=30)
    assert proc.returncode == -signal.SIGKILL
    running, finished, others = log.settle()
    log.close()
    assert (sorted(running), finished, others) == (["b:2", "c:3"], ["a:1"], ["d:4"])


def test_the_claim_log_rings_keep_more_entries_than_a_worker_holds():
    log = ClaimLog.create(3)
    for n in range(0, 1000, 7):  # fetches of 7 claims: the ring wraps inside some of them
        log.claimed([f"t{k}:job{k}" for k in range(n, min(n + 7, 1000))])
    _, _, others = log.settle()
    log.close()
    assert len(others) == log.ring and others == [f"t{n}:job{n}" for n in range(1000 - log.ring, 1000)]
    assert log.ring >= 5 * 3  # threads plus the prefetch allowance (4 x concurrency)
