"""A process that enqueues one unique job from many threads at the same instant (the
race test in tests/test_unique_races.py). argv: key, threads, start time (epoch);
prints one JSON line: [[job_id, duplicate], ...]."""
import json
import sys
import threading
import time

import django

django.setup()

from tests.worker_jobs import UniqueRecordJob  # noqa: E402


def main() -> None:
    key, threads, start = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    results, errors = [], []
    barrier = threading.Barrier(threads)

    def enqueue() -> None:
        try:
            barrier.wait(30)
            time.sleep(max(0.0, start - time.time()))  # every process lets go at the same instant
            job = UniqueRecordJob.perform_later("/dev/null", key)
            results.append([job.job_id, job.duplicate])
        except Exception as exc:  # reported, never swallowed: the test fails on it
            errors.append(f"{type(exc).__name__}: {exc}")

    pool = [threading.Thread(target=enqueue) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join(60)
    print(json.dumps({"results": results, "errors": errors}))


main()
