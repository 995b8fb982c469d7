"""`manage.py jobs_bench` end to end on every durable adapter, small N: every figure is
printed with a number, every job it enqueued ran (the drain counts them), nothing is
left in its queue, and a non-durable adapter is refused with a clear error."""
import re
import subprocess
import sys

import pytest
from django.core.management import CommandError, call_command
from django.test import override_settings

from tests.fixtures.worker import ROOT, command_env

pytestmark = [pytest.mark.timeout(300), pytest.mark.django_db(transaction=True, databases="__all__")]

FIGURES = [r"single enqueue\s+[\d,]+ jobs/s", r"bulk enqueue \(perform_all_later\)\s+[\d,]+ jobs/s",
           r"drain \(first -> last job\)\s+[\d,]+ jobs/s", r"drain \(including start-up\)\s+[\d,]+ jobs/s",
           r"worker RSS \(peak, per process\)\s+[\d.]+ MB",
           r"enqueue->start latency\s+p50 [\d.]+ ms\s+p99 [\d.]+ ms"]


def test_jobs_bench_measures_every_figure(backend):
    done = subprocess.run([sys.executable, "manage.py", "jobs_bench", "--n", "2000", "--latency-n", "40", "-p", "1",
                           "-c", "4", "--timeout", "120"], cwd=ROOT, env=command_env(backend), capture_output=True,
                          text=True, timeout=280)
    assert done.returncode == 0, done.stdout + done.stderr
    for figure in FIGURES:
        assert re.search(figure, done.stdout), (figure, done.stdout)
    assert [q for q in backend.adapter.queues() if q.name == "djjobs-bench" and q.size] == []
    assert backend.adapter.counts().busy == 0


@override_settings(DJJOBS={"ADAPTER": "inline"})
def test_jobs_bench_refuses_a_non_durable_adapter():
    with pytest.raises(CommandError, match="durable adapter.*not 'inline'"):
        call_command("jobs_bench", "--n", "10")
