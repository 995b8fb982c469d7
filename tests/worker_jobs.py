"""Jobs run by real worker processes in the tests. They leave their trace in a
file (one line per event, appended with a single write), which works the same
whichever adapter the worker uses."""
import os
import sys
import time

from djjobs import Job


def note(path: str, *fields) -> None:
    line = (" ".join(str(f) for f in fields) + "\n").encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


class RecordJob(Job):
    """Writes 'ran <token> <pid> <executions>', optionally after sleeping."""
    retry_attempts = 1

    def perform(self, path, token, sleep=0.0):
        if sleep:
            note(path, "start", token, os.getpid(), self.executions)
            time.sleep(sleep)
        note(path, "ran", token, os.getpid(), self.executions)


class BusyJob(Job):
    """Holds the GIL-bound interpreter busy for ``seconds`` (a pure-Python loop)."""

    def perform(self, path, token, seconds):
        note(path, "start", token, os.getpid(), self.executions)
        deadline = time.monotonic() + seconds
        n = 0
        while time.monotonic() < deadline:
            n += 1
        note(path, "ran", token, os.getpid(), self.executions)


class StuckJob(Job):
    """Loops in Python far past its timeout; JobTimeout must stop it."""
    timeout = 1
    retry_attempts = 1

    def perform(self, path, token):
        note(path, "start", token, os.getpid(), self.executions)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            pass
        note(path, "ran", token, os.getpid(), self.executions)


class ExitJob(Job):
    """Calls sys.exit() in perform, as a script ported to a job might."""
    retry_attempts = 1

    def perform(self, path, token):
        note(path, "start", token, os.getpid(), self.executions)
        sys.exit(3)


class SegfaultJob(Job):
    """Crashes its worker process with a real segmentation fault (a C-level crash no
    Python handler sees), as a buggy extension module would."""

    def perform(self, path, token):
        import ctypes
        note(path, "start", token, os.getpid(), self.executions)
        time.sleep(0.3)  # after any fetch in flight has returned (see docs/worker.md, worker deaths)
        ctypes.string_at(0)


class AllocatesAndFails(Job):
    """Loads ``megabytes`` of data, notes the process' RSS, and fails for good. It turns
    the cyclic GC off in its worker process first, so what frees the data (or not) is the
    worker's own release of the run, not a collection that happens to run meanwhile."""
    retry_attempts = 1

    def perform(self, path, token, megabytes):
        import gc
        import psutil
        gc.disable()
        data = b"x" * (megabytes * 1024 * 1024)
        note(path, "loaded", token, os.getpid(), psutil.Process().memory_info().rss)
        raise MemoryError(f"pretend {len(data)} bytes were not enough")


class UniqueRecordJob(Job):
    """RecordJob, unique per token (until it finishes); sleeps on its first run only."""
    unique_for = 600
    retry_attempts = 1

    def unique_key(self, path, token, sleep=0.0):
        return f"record:{token}"

    def perform(self, path, token, sleep=0.0):
        note(path, "start", token, os.getpid(), self.executions)
        if sleep and self.executions == 1:
            time.sleep(sleep)
        note(path, "ran", token, os.getpid(), self.executions)


class RateRecordJob(Job):
    """Writes 'start <token> <time> <executions>': at most 10 starts per 2 s."""
    rate_limit = (10, 2)

    def perform(self, path, token):
        note(path, "start", token, repr(time.time()), self.executions)


class LimitedRecordJob(Job):
    """Writes 'start <group> <token> <time>' and 'end …': at most 2 at once per group; sleeps on
    its first run only."""
    concurrency_limit = 2

    def concurrency_key(self, path, group, token, sleep=0.0):
        return f"group:{group}"

    def perform(self, path, group, token, sleep=0.0):
        note(path, "start", group, token, repr(time.time()))
        if self.executions == 1:
            time.sleep(sleep)
        note(path, "end", group, token, repr(time.time()))


class SoloRecordJob(LimitedRecordJob):
    """LimitedRecordJob, one at a time per group."""
    concurrency_limit = 1


class CooperativeJob(Job):
    """Writes 'start <token>', then 'tick <token> <i>' every 50 ms for ``ticks`` ticks, checking
    ``self.cancelled`` before each: on a request it writes 'stopped <token> <i>' and stops."""
    retry_attempts = 1

    def perform(self, path, token, ticks=400):
        from djjobs import JobCancelled
        note(path, "start", token, self.executions)
        for i in range(ticks):
            if self.cancelled:
                note(path, "stopped", token, i)
                raise JobCancelled()
            note(path, "tick", token, i)
            time.sleep(0.05)
        note(path, "done", token)


class StubbornJob(Job):
    """Ignores cancellation: writes 'start <token> <executions>', waits for ``flag`` to exist
    (bounded), then fails, which the default policy would retry."""

    def perform(self, path, token, flag):
        note(path, "start", token, self.executions)
        deadline = time.monotonic() + 30
        while not os.path.exists(flag) and time.monotonic() < deadline:
            time.sleep(0.02)
        raise ValueError("failing after its cancellation was asked")


class LinkJob(Job):
    """A link of a chain: writes 'start <token> <time>' and 'end <token> <time>', after an
    optional sleep; fails for good (no retry) when ``fail`` is true."""
    retry_attempts = 1

    def perform(self, path, token, sleep=0.0, fail=False):
        note(path, "start", token, repr(time.time()))
        if sleep:
            time.sleep(sleep)
        if fail:
            raise ValueError(f"link {token} fails")
        note(path, "end", token, repr(time.time()))


class BatchItemJob(Job):
    """A job of a batch: sleeps to the next ``tick`` boundary of the wall clock (so jobs running
    at once on different processes end at the same instant), writes 'run <token>', and fails for
    good when ``fail`` is true."""
    retry_attempts = 1

    def perform(self, path, token, tick=0.05, fail=False):
        time.sleep(tick - time.time() % tick)
        if fail:
            raise ValueError(f"item {token} fails")
        note(path, "run", token)


class BatchNoteJob(Job):
    """A batch callback: writes 'callback <event> <batch id> <total> <succeeded> <failed>'."""

    def perform(self, status, path):
        note(path, "callback", status.event, status.id, status.total, status.succeeded, status.failed)


# --- cancellation races (tests/test_cancel_races.py) -------------------------------------------

def _note_cancel_signal(sender, job_id, envelope, job=None, **kwargs):
    """job_cancelled receiver of the race tests: 'signal <job id> <pid> <by>' into the job's trace
    (its first argument); <by> is 'worker' when sent with the run's job, 'caller' without."""
    if envelope is not None and envelope.args:
        note(envelope.args[0], "signal", job_id, os.getpid(), "worker" if job is not None else "caller")


def listen_for_cancel_signals(sender) -> None:
    from djjobs import signals
    signals.job_cancelled.connect(_note_cancel_signal, sender=sender, dispatch_uid=f"race-{sender.job_name}")


def stop_listening_for_cancel_signals(sender) -> None:
    from djjobs import signals
    signals.job_cancelled.disconnect(sender=sender, dispatch_uid=f"race-{sender.job_name}")


class DrainJob(Job):
    """Checks ``self.cancelled`` once, at its start, noting the time just before: on a request
    'saw <token> <time> <pid>' and JobCancelled; else 'ran <token> <time> <pid> <executions>'
    (after an optional sleep). Its worker process notes job_cancelled (listen_for_cancel_signals)."""
    retry_attempts = 1

    def perform(self, path, token, sleep=0.0):
        from djjobs import JobCancelled
        listen_for_cancel_signals(DrainJob)
        before = time.time()
        if self.cancelled:
            note(path, "saw", token, repr(before), os.getpid())
            raise JobCancelled()
        if sleep:
            time.sleep(sleep)
        note(path, "ran", token, repr(before), os.getpid(), self.executions)


class CoopPidJob(Job):
    """CooperativeJob that names its process: 'start <token> <pid> <executions>', 'tick' every
    50 ms (``ticks`` of them) checking ``self.cancelled`` before each, then 'stopped <token> <pid>'
    (and JobCancelled) or 'done <token> <pid> <executions>'."""
    retry_attempts = 1

    def perform(self, path, token, ticks=200):
        from djjobs import JobCancelled
        note(path, "start", token, os.getpid(), self.executions)
        for _ in range(ticks):
            if self.cancelled:
                note(path, "stopped", token, os.getpid())
                raise JobCancelled()
            time.sleep(0.05)
        note(path, "done", token, os.getpid(), self.executions)


class LimitedCoopJob(Job):
    """At most 2 at once per group; 'start <group> <token> <time>', then checks ``self.cancelled``
    every 50 ms for ``seconds``: 'stopped <group> <token> <time>' (JobCancelled) or
    'end <group> <token> <time>'."""
    concurrency_limit = 2
    retry_attempts = 1

    def concurrency_key(self, path, group, token, seconds=0.0):
        return f"race:{group}"

    def perform(self, path, group, token, seconds=0.0):
        from djjobs import JobCancelled
        note(path, "start", group, token, repr(time.time()))
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if self.cancelled:
                note(path, "stopped", group, token, repr(time.time()))
                raise JobCancelled()
            time.sleep(0.05)
        note(path, "end", group, token, repr(time.time()))


class UniqueCoopJob(Job):
    """Unique per token (until it finishes): 'start <token> <job id>', then checks
    ``self.cancelled`` every 50 ms for ``seconds``: 'stopped <token> <job id>' or 'end <token> <job id>'."""
    unique_for = 600
    retry_attempts = 1

    def unique_key(self, path, token, seconds=0.0):
        return f"race-unique:{token}"

    def perform(self, path, token, seconds=0.0):
        from djjobs import JobCancelled
        note(path, "start", token, self.job_id)
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if self.cancelled:
                note(path, "stopped", token, self.job_id)
                raise JobCancelled()
            time.sleep(0.05)
        note(path, "end", token, self.job_id)
class StepsJob(Job):
    """A continuation. Every run writes 'begin <token> <pid> <executions>'; step 'first' writes
    'first <token>'; step 'items' writes 'item <token> <i>' for each item from its cursor to
    ``n``, sleeping ``pause`` after each, then checkpoints i + 1; step 'last' writes 'last <token>'.
    Progress is stored durably at most every 0.2 s (and at each step's end)."""
    checkpoint_interval = 0.2
    retry_attempts = 1

    def perform(self, path, token, n, pause):
        note(path, "begin", token, os.getpid(), self.executions)
        with self.step("first"):
            note(path, "first", token)
        with self.step("items", cursor=0) as step:
            for i in range(step.cursor, n):
                note(path, "item", token, i)
                time.sleep(pause)
                step.checkpoint(i + 1)
        with self.step("last"):
            note(path, "last", token)
