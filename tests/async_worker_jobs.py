"""Async jobs (``async def perform``) run by real worker processes in the tests. Like
tests/worker_jobs.py, they leave their trace in a file, one line per event."""
import asyncio
import os
import time

from djjobs import Job, retry_on
from tests.worker_jobs import note


class AsyncSleepJob(Job):
    """Notes 'start' and 'ran <token> <pid> <executions> <monotonic>', awaiting ``seconds`` between."""
    retry_attempts = 1

    async def perform(self, path, token, seconds=0.2):
        note(path, "start", token, os.getpid(), self.executions, time.monotonic())
        await asyncio.sleep(seconds)
        note(path, "ran", token, os.getpid(), self.executions, time.monotonic())


class AsyncTimeoutJob(Job):
    """Awaits far past its timeout: the worker must cancel it (JobTimeout), then it is dead."""
    timeout = 0.5
    retry_attempts = 1

    async def perform(self, path, token):
        note(path, "start", token, os.getpid(), self.executions)
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            note(path, "cancelled", token, os.getpid(), self.executions)
            raise
        note(path, "ran", token, os.getpid(), self.executions)


class AsyncBlockingJob(Job):
    """Blocks its event loop with time.sleep: the worker must report it."""

    async def perform(self, path, token, seconds=0.6):
        note(path, "start", token, os.getpid(), self.executions)
        time.sleep(seconds)
        note(path, "ran", token, os.getpid(), self.executions)


@retry_on(ConnectionError, wait=0, attempts=3)
class AsyncFlakyJob(Job):
    """Fails its first run (retry_on: again at once), succeeds the second."""

    async def perform(self, path, token):
        note(path, "start", token, os.getpid(), self.executions)
        await asyncio.sleep(0.01)
        if self.executions < 2:
            raise ConnectionError("first run fails")
        note(path, "ran", token, os.getpid(), self.executions)
