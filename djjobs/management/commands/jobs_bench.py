"""``manage.py jobs_bench``: how fast is djjobs on *your* setup?

Measures, on the configured adapter and a dedicated queue (``djjobs-bench``):
single enqueue rate, bulk enqueue rate (``perform_all_later``), drain rate of N
no-op jobs with real ``runjobs`` processes, enqueue->start latency on an idle
worker (p50/p99), and worker RSS. Numbers only mean something beside a peer
measured on the same machine in the same run (see ../shared/bench/).
"""
from __future__ import annotations

import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time

from django.core.management.base import BaseCommand, CommandError

from djjobs.adapters import get_adapter
from djjobs.jobs import BenchLatencyJob, BenchNoopJob
from djjobs.job import perform_all_later

QUEUE = "djjobs-bench"


class Command(BaseCommand):
    help = __doc__.splitlines()[0]

    def add_arguments(self, parser):
        parser.add_argument("--n", type=int, default=20000, help="Jobs per workload (default 20,000).")
        parser.add_argument("--processes", "-p", type=int, default=2, help="Worker processes for the drain.")
        parser.add_argument("--concurrency", "-c", type=int, default=10, help="Threads per worker process.")
        parser.add_argument("--latency-n", type=int, default=500, help="Jobs in the latency workload.")
        parser.add_argument("--workloads", default="enqueue,bulk,drain,latency",
                            help="Comma-separated subset of enqueue,bulk,drain,latency.")
        parser.add_argument("--timeout", type=float, default=300, help="Give up on a drain after this many seconds.")

    def handle(self, *args, **options):
        self.adapter = get_adapter()
        if not self.adapter.durable:
            raise CommandError(f"jobs_bench measures a durable adapter (redis or database), not {self.adapter.name!r}.")
        self.options = options
        workloads = [w.strip() for w in options["workloads"].split(",") if w.strip()]
        self.stdout.write(f"djjobs bench: adapter {self.adapter.name}, n={options['n']:,}, "
                          f"{options['processes']} process(es) x {options['concurrency']} threads")
        self.adapter.clear(QUEUE)
        for workload in workloads:
            getattr(self, f"bench_{workload}")()
            self.adapter.clear(QUEUE)

    def report(self, name: str, value: str) -> None:
        self.stdout.write(f"  {name:<34}{value}")

    def bench_enqueue(self):
        n = self.options["n"]
        started = time.perf_counter()
        for _ in range(n):
            BenchNoopJob.perform_later()
        self.report("single enqueue", f"{n / (time.perf_counter() - started):>12,.0f} jobs/s")

    def bench_bulk(self):
        n = self.options["n"]
        started = time.perf_counter()
        for start in range(0, n, 1000):
            perform_all_later(BenchNoopJob() for _ in range(min(1000, n - start)))
        self.report("bulk enqueue (perform_all_later)", f"{n / (time.perf_counter() - started):>12,.0f} jobs/s")

    def bench_drain(self):
        n = self.options["n"]
        for start in range(0, n, 1000):
            perform_all_later(BenchNoopJob() for _ in range(min(1000, n - start)))
        base = self.adapter.counts().processed
        spawned = time.perf_counter()
        worker = self._start_worker()
        first = last = None
        first_done = 0
        peak_rss = []
        deadline = time.monotonic() + self.options["timeout"]
        progress, progress_at = 0, time.monotonic()
        try:
            while time.monotonic() < deadline:
                done = self.adapter.counts().processed - base
                now = time.perf_counter()
                if done != progress:
                    progress, progress_at = done, time.monotonic()
                elif time.monotonic() - progress_at > 60:
                    raise CommandError(f"No job finished for 60 s ({done:,} of {n:,} done): are the workers "
                                       "failing? Run `manage.py runjobs -q djjobs-bench` to see their log.")
                if done and first is None:
                    first, first_done = now, done
                peak_rss.append(self._rss(worker))
                if done >= n:
                    last = now
                    break
                time.sleep(0.005)
        finally:
            self._stop(worker)
        if last is None:
            raise CommandError(f"Drain did not finish within {self.options['timeout']} s")
        # Jobs counted between the first poll that saw one finished and the end, over that time.
        self.report("drain (first -> last job)", f"{(n - first_done) / (last - first):>12,.0f} jobs/s"
                    if last > first and n > first_done else "n/a (drained between two polls: use a larger --n)")
        self.report("drain (including start-up)", f"{n / (last - spawned):>12,.0f} jobs/s")
        rss = max((max(sample) for sample in peak_rss if sample), default=0)
        self.report("worker RSS (peak, per process)", f"{rss / 2**20:>12,.1f} MB" if rss else
                    "n/a (no /proc here: pip install psutil)")

    def bench_latency(self):
        count = self.options["latency_n"]
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "latency")
            worker = self._start_worker()
            try:
                for _ in range(20):
                    BenchLatencyJob.perform_later(path + ".warm", time.time())
                self._wait_lines(path + ".warm", 20, 60)
                time.sleep(1)
                t0 = time.perf_counter()
                for i in range(count):
                    delay = t0 + i * 0.005 - time.perf_counter()
                    if delay > 0:
                        time.sleep(delay)
                    BenchLatencyJob.perform_later(path, time.time())
                samples = sorted(self._wait_lines(path, count, 60))
            finally:
                self._stop(worker)
        p50, p99 = samples[len(samples) // 2], samples[min(len(samples) - 1, int(len(samples) * 0.99))]
        self.report("enqueue->start latency", f"p50 {p50:.2f} ms  p99 {p99:.2f} ms  max {samples[-1]:.2f} ms"
                                               f"  (mean {statistics.mean(samples):.2f})")

    def _wait_lines(self, path: str, count: int, timeout: float) -> list[float]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if os.path.exists(path):
                with open(path) as f:
                    values = [float(line) for line in f if line.strip()]
                if len(values) >= count:
                    return values
            time.sleep(0.02)
        raise CommandError(f"Only some latency jobs ran within {timeout} s")

    def _start_worker(self) -> subprocess.Popen:
        argv = [sys.executable, "-m", "django", "runjobs", "-q", QUEUE, "-p", str(self.options["processes"]),
                "-c", str(self.options["concurrency"]), "-v", "0"]
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [os.getcwd(), os.environ.get("PYTHONPATH")])))
        return subprocess.Popen(argv, env=env, start_new_session=True)

    def _rss(self, worker: subprocess.Popen) -> list[int]:
        """RSS of each worker process (the supervisor's children): from /proc on Linux,
        else from psutil if installed; [] when neither can tell."""
        try:
            with open(f"/proc/{worker.pid}/task/{worker.pid}/children") as f:
                children = [int(pid) for pid in f.read().split()]
            sizes = []
            for pid in children:
                with open(f"/proc/{pid}/statm") as f:
                    sizes.append(int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE"))
            return sizes
        except (OSError, ValueError):
            pass
        try:
            import psutil
            return [c.memory_info().rss for c in psutil.Process(worker.pid).children()]
        except Exception:
            return []

    def _stop(self, worker: subprocess.Popen) -> None:
        if worker.poll() is None:
            worker.send_signal(signal.SIGTERM)
            try:
                worker.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(worker.pid, signal.SIGKILL)
                worker.wait(10)
