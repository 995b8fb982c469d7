"""What a worker process is doing with its claims, kept where its death cannot erase it.

The supervisor creates a small shared memory file (``memfd``) per worker process and
passes it down like the pipe. The worker writes into it, without a system call or a
lock per job:

- ``claimed``: every claim it received (a ring of the last few hundred);
- ``running``: per job thread, the claim whose job it is running (empty between jobs);
- ``finished``: every claim whose job succeeded or was discarded (a ring), written before
  the thread frees itself, so before the acknowledgement that may never be sent.

When the worker dies (SIGKILL, a segfault, the OOM killer), the supervisor reads it and
settles the claims at once, as the contract asks: the running ones get a death
(``Adapter.abandon``), the finished ones are acknowledged (``complete``), and the rest,
prefetched and never started, go back to the front of their queues untouched
(``release``). Every one of those calls is fenced by the lease token, so a claim that
was already acknowledged, reported or recovered is left alone. Without this, lease
recovery counts a death against every claim of the dead worker, and a segfaulting job
made poison pills of the innocent jobs prefetched beside it.

The rings hold more entries than a worker can hold claims (threads plus the prefetch
allowance, at most 5 x concurrency), so no held claim is overwritten.
"""
from __future__ import annotations

import itertools
import mmap
import os

ENTRY = 192  # bytes per entry: a 2-byte length, a 4-byte sequence number, then the claim's key (UTF-8)
HEAD = 6


class ClaimLog:
    def __init__(self, fd: int, threads: int, *, create: bool = False):
        self.fd, self.threads = fd, threads
        self.ring = 8 * threads + 32
        size = ENTRY * (threads + 2 * self.ring)
        if create:
            os.ftruncate(fd, size)
        self._mem = mmap.mmap(fd, size)
        self._claimed = itertools.count()  # next() is atomic under the GIL: one slot per call
        self._finished = itertools.count()

    @classmethod
    def create(cls, threads: int) -> "ClaimLog":
        """A new, empty log (the supervisor's side); pass ``fd`` to the worker process."""
        return cls(os.memfd_create("djjobs-claims", 0), threads, create=True)

    # --- the worker's side ---------------------------------------------------
    def claimed(self, key: str) -> None:
        n = next(self._claimed)
        self._put(self.threads + n % self.ring, key, n)

    def running(self, thread: int, key: str) -> None:
        self._put(thread, key, 0)

    def idle(self, thread: int) -> None:
        self._mem[thread * ENTRY:thread * ENTRY + 2] = b"\0\0"

    def finished(self, key: str) -> None:
        n = next(self._finished)
        self._put(self.threads + self.ring + n % self.ring, key, n)

    def _put(self, index: int, key: str, seq: int) -> None:
        data = key.encode()
        at = index * ENTRY
        self._mem[at:at + 2] = b"\0\0"  # torn until the length is written again, last
        if len(data) > ENTRY - HEAD:  # a very long job id: unknown here, left to its lease
            return
        self._mem[at + 2:at + HEAD + len(data)] = (seq & 0xFFFFFFFF).to_bytes(4, "little") + data
        self._mem[at:at + 2] = len(data).to_bytes(2, "little")

    # --- the supervisor's side -------------------------------------------------
    def settle(self) -> tuple[list[str], list[str], list[str]]:
        """(running, finished, others): the keys of a dead worker's claims by what it was
        doing with them; ``others`` in the order they were claimed."""
        finished = self._keys(self.threads + self.ring, self.ring)
        done = set(finished)
        running = [k for k in self._keys(0, self.threads) if k not in done]
        skip = done | set(running)
        others = [k for k in self._keys(self.threads, self.ring) if k not in skip]
        return running, finished, others

    def _keys(self, first: int, count: int) -> list[str]:
        """The keys in ``count`` entries from ``first``, oldest first (by sequence number)."""
        found = []
        for i in range(first, first + count):
            at = i * ENTRY
            size = int.from_bytes(self._mem[at:at + 2], "little")
            if 0 < size <= ENTRY - HEAD:
                try:
                    key = self._mem[at + HEAD:at + HEAD + size].decode()
                except UnicodeDecodeError:  # torn by the death: unknown here, left to its lease
                    continue
                found.append((int.from_bytes(self._mem[at + 2:at + HEAD], "little"), key))
        return list(dict.fromkeys(key for _, key in sorted(found)))

    def close(self) -> None:
        self._mem.close()
        os.close(self.fd)
