"""Detect a coroutine that blocks its worker's event loop.

An async job shares its process' loop with up to ``--async-concurrency`` others: while one
coroutine runs blocking code (``time.sleep``, a sync HTTP client, the sync ORM through
``sync_to_async``-less code, a CPU-bound loop), none of the others advances, and their
timeouts cannot fire. The loop beats every BEAT seconds (a ``call_later`` callback); a
thread of its own checks the beat, and once the loop is late by more than ``threshold``
(``DJJOBS["ASYNC_LAG_WARNING"]``, default 0.25 s) it logs one WARNING per stall, while it
lasts, naming the job whose task is running then, and one more when the loop runs again,
with how long it stalled. The watching thread needs the GIL: a job holding it in C code
stalls the watch too, and the stall is reported when it ends.
"""
from __future__ import annotations

import asyncio
import logging
import threading
import time
from typing import Callable

logger = logging.getLogger("djjobs")
BEAT = 0.05


class LoopWatch:
    def __init__(self, threshold: float, describe: Callable[[asyncio.Task | None], str]):
        self.threshold, self.describe = threshold, describe
        self.beat = time.monotonic()
        self.loop: asyncio.AbstractEventLoop | None = None
        self.stalls = 0  # how many stalls were reported (tests, metrics)

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        loop.call_soon_threadsafe(self._beat)
        threading.Thread(target=self._watch, name="djjobs-loop-watch", daemon=True).start()

    def _beat(self) -> None:
        self.beat = time.monotonic()
        self.loop.call_later(BEAT, self._beat)

    def _watch(self) -> None:
        stalled_since, what = None, ""
        every = max(0.01, min(BEAT, self.threshold / 2))
        while True:
            time.sleep(every)
            beat = self.beat
            late = time.monotonic() - beat - BEAT
            if stalled_since is None and late > self.threshold:
                stalled_since, what = beat, self.describe(_current_task(self.loop))
                self.stalls += 1
                logger.warning(
                    "The event loop of this worker process has been blocked for %.2f s by %s: a coroutine called "
                    "blocking code (time.sleep, a sync HTTP or database client, a long computation) and no other "
                    "async job of this process runs meanwhile. Await an async equivalent (asyncio.sleep, "
                    "httpx.AsyncClient, the async ORM), or run the blocking call in a thread with "
                    "asgiref.sync.sync_to_async (docs/async.md).", late, what)
            elif stalled_since is not None and beat != stalled_since:
                logger.warning("The event loop of this worker process runs again after a stall of %.2f s (%s)",
                               beat - stalled_since, what)
                stalled_since = None


def _current_task(loop: asyncio.AbstractEventLoop | None) -> asyncio.Task | None:
    """The task running on ``loop`` now, read from another thread (None when unknown)."""
    try:
        return asyncio.current_task(loop)
    except Exception:
        return None
