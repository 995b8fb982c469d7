"""Job classes used across the test-suite (autodiscovered: tests is an installed app).

They record what happened in ``CALLS`` (in-process) so tests can assert on it.
"""
import threading

from djjobs import DeserializationError, Job, discard_on, retry_on

CALLS: list = []
_lock = threading.Lock()


def record(*item):
    with _lock:
        CALLS.append(item)


class EchoJob(Job):
    def perform(self, *args, **kwargs):
        record("echo", args, kwargs)
        return args, kwargs


class MailerJob(Job):
    queue_name = "mailers"
    priority = 5

    def perform(self, to):
        record("mail", to)


class FlakyError(Exception):
    pass


class FatalError(Exception):
    pass


@retry_on(FlakyError, wait=10, attempts=3, jitter=0)
@discard_on(FatalError, DeserializationError)
class FlakyJob(Job):
    """Fails with FlakyError ``fail_times`` times (counted per job in CALLS), then succeeds."""

    def perform(self, fail_times, key="k"):
        record("flaky", key, self.executions)
        if self.executions <= fail_times:
            raise FlakyError(f"attempt {self.executions}")
        return "ok"


class AlwaysFailsJob(Job):
    retry_attempts = 2

    def perform(self):
        record("fail", self.executions)
        raise ValueError("always fails")
