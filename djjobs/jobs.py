"""djjobs' own jobs (autodiscovered like any app's jobs.py): the benchmark's workload."""
import os
import time

from .job import Job


class BenchNoopJob(Job):
    """Does nothing: measures the library, not the job."""
    queue_name = "djjobs-bench"
    enqueue_after_commit = False

    def perform(self) -> None:
        return None


class BenchLatencyJob(Job):
    """Appends (start - enqueue) in ms to ``path``: enqueue->start latency."""
    queue_name = "djjobs-bench"
    enqueue_after_commit = False

    def perform(self, path: str, enqueued: float) -> None:
        delta = (time.time() - enqueued) * 1000
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, f"{delta:.4f}\n".encode())
        finally:
            os.close(fd)
