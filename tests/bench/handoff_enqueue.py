"""Single perform_later calls into an idle Redis worker: the hand-off path (docs/redis.md).

    .venv/bin/python tests/bench/handoff_enqueue.py [--jobs 20000] [--threads 4] [--every 0] [--root DIR]

Starts its own redis-server on a free 127.0.0.1 port and one `runjobs -p 1 -c THREADS`
(both stopped by PID at the end), lets the worker go idle (registered for hand-offs), then
times JOBS sequential perform_later calls of a job that appends its start and end to a file
(tests.worker_jobs.LinkJob), and waits for all to run and be acknowledged. With ``--every
SECONDS`` the calls are spaced (a trickle) and the median and 99th percentile of the time from
perform_later to the job's start are printed too. ``--root`` runs the worker and the producer from another checkout of
the project (an exported older commit, to compare before and after a change on the same
machine in the same minute). Prints microseconds per perform_later, the drain time, and
what Redis counted meanwhile: script calls (enqueues plus worker round trips), LPOP calls
(claims from queue lists: a handed job needs none) and PUBLISH calls (hand-offs and wake-ups)."""
import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

parser = argparse.ArgumentParser()
parser.add_argument("--jobs", type=int, default=20000)
parser.add_argument("--threads", type=int, default=4)
parser.add_argument("--every", type=float, default=0.0)
parser.add_argument("--root", default=str(Path(__file__).resolve().parents[2]))
args = parser.parse_args()
root = os.path.abspath(args.root)
sys.path.insert(0, root)

work = tempfile.mkdtemp(prefix="djjobs-handoff-bench-")
with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
server = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly",
                           "no", "--dir", work], stdout=subprocess.DEVNULL, start_new_session=True)
worker = None
try:
    settings = {"ADAPTER": "redis", "REDIS_URL": f"redis://127.0.0.1:{port}/0", "QUEUES": ["default"]}
    os.environ.update(DJANGO_SETTINGS_MODULE="tests.worker_settings", DJJOBS_TEST_DJJOBS=json.dumps(settings),
                      PYTHONPATH=root, DJJOBS_TEST_SQLITE=os.path.join(work, "db.sqlite3"))
    import django
    django.setup()
    import redis

    from djjobs import get_adapter
    from tests.worker_jobs import LinkJob
    client = redis.Redis(port=port)
    deadline = time.monotonic() + 20
    while True:
        try:
            client.ping()
            break
        except redis.ConnectionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
    trace = os.path.join(work, "trace")
    worker = subprocess.Popen([sys.executable, "manage.py", "runjobs", "-p", "1", "-c", str(args.threads), "-v", "0"],
                              cwd=root, stdout=open(os.path.join(work, "worker.log"), "ab"),
                              stderr=subprocess.STDOUT, start_new_session=True)

    def ran() -> int:
        try:
            with open(trace, "rb") as f:
                return f.read().count(b"end ")
        except FileNotFoundError:
            return 0

    def wait_ran(n: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while ran() < n:
            if time.monotonic() > deadline:
                raise SystemExit(f"only {ran()} of {n} jobs ran in {timeout} s; see {work}/worker.log")
            time.sleep(0.01)

    LinkJob.perform_later(trace, "warm-up")
    wait_ran(1, 60)
    time.sleep(1.5)  # idle: the fetcher is registered for hand-offs

    def stats() -> dict:
        info = client.info("commandstats")
        return {name: info.get(f"cmdstat_{name}", {}).get("calls", 0) for name in ("evalsha", "lpop", "publish")}

    before = stats()
    enqueue, clock, every = LinkJob.perform_later, time.time, args.every
    started = time.perf_counter()
    for i in range(args.jobs):
        enqueue(trace, repr(clock()))
        if every:
            time.sleep(every)
    took = time.perf_counter() - started - every * args.jobs
    wait_ran(args.jobs + 1, 600)
    drained = time.perf_counter() - started
    adapter, deadline = get_adapter(), time.monotonic() + 10
    while (counts := adapter.counts()).busy and time.monotonic() < deadline:  # acks ride on the next fetch
        time.sleep(0.01)
    assert counts.enqueued == 0 and counts.busy == 0 and counts.processed == args.jobs + 1, counts
    after = {k: v - before[k] for k, v in stats().items()}
    latency = ""
    if every:
        with open(trace) as f:
            waits = sorted(float(fields[2]) - float(fields[1]) for fields in (line.split() for line in f)
                           if fields[0] == "start" and fields[1] != "warm-up")
        latency = (f"; start latency p50 {waits[len(waits) // 2] * 1e3:.2f} ms, "
                   f"p99 {waits[int(len(waits) * 0.99)] * 1e3:.2f} ms")
    each = "" if every else f"{took / args.jobs * 1e6:.1f} us each, "  # (a trickle's calls include its sleeps' slop)
    spacing = f" every {every * 1e3:g} ms" if every else ""
    print(f"{args.jobs} perform_later{spacing}, -p 1 -c {args.threads}: {each}all ran after {drained:.2f} s; "
          f"Redis: {after['evalsha']} script calls, {after['lpop']} LPOP, {after['publish']} PUBLISH{latency}")
finally:
    for proc in (worker, server):
        if proc is not None and proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(5)
    shutil.rmtree(work, ignore_errors=True)
