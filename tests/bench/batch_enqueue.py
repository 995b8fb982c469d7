"""Bulk enqueue into a batch against the same bulk outside one (docs/batches.md): 20,000
jobs by perform_all_later, three rounds each, on a redis-server this script starts on a free
loopback port (and stops).

    .venv/bin/python tests/bench/batch_enqueue.py

Prints jobs/s per round for both."""
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
os.environ["DJANGO_SETTINGS_MODULE"] = "tests.settings"
N, ROUNDS = 20_000, 3


def main() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                               "--appendonly", "no", "--dir", tempfile.mkdtemp()], stdout=subprocess.DEVNULL)
    try:
        import django
        django.setup()
        import redis
        from djjobs import Batch, perform_all_later
        from djjobs.adapters import use_adapter
        from djjobs.adapters.redis import RedisAdapter
        from tests.jobs import EchoJob
        url = f"redis://127.0.0.1:{port}/0"
        for _ in range(50):  # bounded wait for the server
            try:
                redis.Redis.from_url(url).ping()
                break
            except redis.ConnectionError:
                time.sleep(0.1)
        adapter = RedisAdapter({"REDIS_URL": url})
        with use_adapter(adapter):
            for _ in range(ROUNDS):
                jobs = [EchoJob(i) for i in range(N)]
                started = time.perf_counter()
                perform_all_later(jobs)
                plain = time.perf_counter() - started
                jobs = [EchoJob(i) for i in range(N)]
                started = time.perf_counter()
                with Batch(on_complete=EchoJob):
                    perform_all_later(jobs)
                batched = time.perf_counter() - started
                print(f"plain {N / plain:,.0f} jobs/s   in a batch {N / batched:,.0f} jobs/s")
                adapter.client.flushall()
    finally:
        server.kill()
        server.wait(10)


if __name__ == "__main__":
    main()
