"""What a worker process is doing with its claims, kept where its death cannot erase it.

The supervisor creates a small shared memory file (``memfd``) per worker process and
passes it down like the pipe. The worker writes into it, without a system call or a
lock, two entries per job and one per fetch (each entry is one write: writes into the
mapping measured costly in a busy worker, about 3 µs each):

- ``claimed``: every claim it received, one write per fetch (a ring of the last few hundred);
- ``running``: per job thread, the claim whose job it runs or last ran (a finished or
  reported one is harmless there: see below);
- ``finished``: every claim whose job succeeded or was discarded (a ring), written before
  the thread frees itself, so before the acknowledgement that may never be sent.

When the worker dies (SIGKILL, a segfault, the OOM killer), the supervisor reads it and
settles the claims at once, as the contract asks: the running ones get a death
(``Adapter.abandon``), the finished ones are acknowledged (``complete``), and the rest,
prefetched and never started, go back to the front of their queues untouched
(``release``). Every one of those calls is fenced by the lease token, so a claim that
was already acknowledged, reported or recovered is left alone: that is why a thread's
entry is not cleared between jobs, and why an entry torn by the death (old and new bytes
mixed, naming no real lease) does no harm. Without this, lease
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
        self._view = memoryview(self._mem)  # writes through it (see the module docstring)
        self._claimed = itertools.count()  # next() is atomic under the GIL: one slot per call
        self._finished = itertools.count()

    @classmethod
    def create(cls, threads: int) -> "ClaimLog":
        """A new, empty log (the supervisor's side); pass ``fd`` to the worker process."""
        return cls(os.memfd_create("djjobs-claims", 0), threads, create=True)

    # --- the worker's side ---------------------------------------------------
    def claimed(self, keys: list[str]) -> None:
        """A fetch's claims, in consecutive ring entries: one write (two at the ring's end)."""
        n = len(keys)
        first = next(self._claimed)
        for _ in range(n - 1):
            next(self._claimed)  # (only the fetch loop calls this: the n numbers are consecutive)
        start = first % self.ring
        data = b"".join(_entry(key, first + i) for i, key in enumerate(keys))
        head = min(n, self.ring - start) * ENTRY
        at = (self.threads + start) * ENTRY
        self._view[at:at + head] = data[:head]
        if len(data) > head:  # wrapped: the rest from the ring's start (never past where this began)
            rest = data[head:head + start * ENTRY]
            at = self.threads * ENTRY
            self._view[at:at + len(rest)] = rest

    def running(self, thread: int, key: str) -> None:
        at = thread * ENTRY
        self._view[at:at + ENTRY] = _entry(key, 0)

    def finished(self, key: str) -> None:
        n = next(self._finished)
        at = (self.threads + self.ring + n % self.ring) * ENTRY
        self._view[at:at + ENTRY] = _entry(key, n)

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
        self._view.release()
        self._mem.close()
        os.close(self.fd)


def _entry(key: str, seq: int) -> bytes:
    """One entry: length, sequence number, key, padded to ENTRY bytes (a key too long to
    fit is written as empty: unknown here, left to its lease)."""
    data = key.encode()
    if len(data) > ENTRY - HEAD:
        return bytes(ENTRY)
    return (len(data).to_bytes(2, "little") + (seq & 0xFFFFFFFF).to_bytes(4, "little") + data).ljust(ENTRY, b"\0")
