"""The Job API: enqueueing, set(), perform_now, retry/discard declarations and their
arithmetic, hooks, retry_job, signals, the registry, and what execution decides."""
import random
import time
from datetime import datetime, timedelta, timezone

import orjson
import pytest

import djjobs
from djjobs import DeserializationError, Job, discard_on, retry_on
from djjobs import handlers, signals
from djjobs.envelope import Envelope
from djjobs.errors import UnknownJobError
from djjobs.execution import DEAD, DISCARDED, RESCHEDULED, RETRY, SUCCEEDED, execute
from djjobs.testing import assert_enqueued_with
from tests.jobs import CALLS, AlwaysFailsJob, EchoJob, FatalError, FlakyJob, MailerJob


class NetError(ConnectionError):
    pass


@retry_on(ConnectionError, TimeoutError, wait="polynomially_longer", attempts=5)
@discard_on(DeserializationError)
class PurchaseNotificationJob(Job):
    queue_name = "mailers"

    def perform(self, purchase, *, resend=False):
        CALLS.append(("purchase", purchase, resend))


def run(env):
    """Execute as a worker would, through the stored bytes."""
    return execute(Envelope.decode(env.encode()))


# --- enqueueing --------------------------------------------------------------
def test_perform_later_returns_the_job_with_its_id(enqueued_jobs):
    job = PurchaseNotificationJob.perform_later(42, resend=True)
    assert isinstance(job, PurchaseNotificationJob) and len(job.job_id) == 32
    env = assert_enqueued_with(job=PurchaseNotificationJob, args=[42], kwargs={"resend": True}, queue="mailers")
    assert env.job_id == job.job_id and env.priority == 0 and env.run_at is None


def test_set_wait_seconds_timedelta_and_wait_until(enqueued_jobs):
    now = time.time()
    PurchaseNotificationJob.set(wait=300).perform_later(1)
    PurchaseNotificationJob.set(wait=timedelta(minutes=10)).perform_later(2)
    at = datetime.now(timezone.utc) + timedelta(hours=1)
    PurchaseNotificationJob.set(wait_until=at, queue="critical", priority=10).perform_later(3)
    envs = enqueued_jobs.enqueued
    assert abs(envs[0].run_at - (now + 300)) < 2 and abs(envs[1].run_at - (now + 600)) < 2
    assert envs[2].run_at == pytest.approx(at.timestamp()) and (envs[2].queue, envs[2].priority) == ("critical", 10)
    assert enqueued_jobs.counts().scheduled == 3
    assert_enqueued_with(job=PurchaseNotificationJob, args=[3], at=at, priority=10, queue="critical")


def test_set_validates_its_options():
    with pytest.raises(TypeError, match="wait or wait_until"):
        EchoJob.set(wait=1, wait_until=datetime.now(timezone.utc)).perform_later()
    with pytest.raises(TypeError, match="aware datetime"):
        EchoJob.set(wait_until=datetime.now()).perform_later()
    with pytest.raises(ValueError, match="Malformed queue name"):
        EchoJob.set(queue="bad queue!").perform_later()
    with pytest.raises(TypeError, match="priority must be an int"):
        EchoJob.set(priority="high").perform_later()
    with pytest.raises(ValueError, match=r"priority must be between -2\*\*31 and 2\*\*31 - 1"):
        EchoJob.set(priority=2**31).perform_later()
    with pytest.raises(ValueError, match=r"TooUrgent.priority must be between"):
        type("TooUrgent", (Job,), {"__module__": __name__, "priority": 2**63, "perform": lambda self: None})


def test_perform_all_later_is_one_bulk_call(enqueued_jobs):
    calls = []
    original = enqueued_jobs.enqueue_many
    enqueued_jobs.enqueue_many = lambda envs: (calls.append(len(envs)), original(envs))
    jobs = djjobs.perform_all_later([EchoJob(i) for i in range(5)] + [MailerJob.set(priority=3).new("a@b")])
    assert calls == [6] and [j.job_id for j in jobs] == [e.job_id for e in enqueued_jobs.enqueued]
    assert enqueued_jobs.enqueued[-1].priority == 3


def test_perform_now_runs_here_and_returns(enqueued_jobs):
    assert EchoJob.perform_now(1, x=2) == ((1,), {"x": 2})
    assert CALLS == [("echo", (1,), {"x": 2})]
    assert enqueued_jobs.enqueued == []


def test_perform_now_enqueues_a_retry_for_later(enqueued_jobs):
    assert FlakyJob.perform_now(5) is None
    [retry] = enqueued_jobs.enqueued
    assert retry.executions == 1 and retry.run_at > time.time() + 9
    assert retry.error["class"] == "tests.jobs.FlakyError"


def test_perform_now_reraises_when_failing_for_good(enqueued_jobs):
    class FailsOnce(AlwaysFailsJob):
        retry_attempts = 1

    with pytest.raises(ValueError, match="always fails"):
        FailsOnce.perform_now()
    assert enqueued_jobs.enqueued == []


# --- retry / discard ---------------------------------------------------------
def test_retry_on_counts_and_waits_then_dead_with_traceback():
    env = FlakyJob(99).to_envelope()
    for attempt in (1, 2):
        out = run(env)
        assert out.kind == RETRY and out.envelope.exception_executions[handlers.handlers_for(FlakyJob)[0].key] == attempt
        assert out.run_at - time.time() == pytest.approx(10, abs=1)  # wait=10, jitter=0
        env = out.envelope
    out = run(env)
    assert out.kind == DEAD and "FlakyError: attempt 3" in out.envelope.error["traceback"]
    assert out.envelope.executions == 3


def test_succeeds_after_retries():
    env = FlakyJob(1).to_envelope()
    first = run(env)
    assert first.kind == RETRY
    assert run(first.envelope).kind == SUCCEEDED


def test_discard_on_drops_and_calls_after_discard():
    seen = []

    @discard_on(FatalError)
    class Discarding(Job):
        def perform(self):
            raise FatalError("no point")

        def after_discard(self, exc):
            seen.append(type(exc))

    out = run(Discarding().to_envelope())
    assert out.kind == DISCARDED and seen == [FatalError]


def test_first_declaration_written_wins_and_subclasses_inherit():
    @retry_on(NetError, attempts=2, wait=1, jitter=0)
    @retry_on(ConnectionError, attempts=9, wait=50, jitter=0)
    class Parent(Job):
        def perform(self):
            raise NetError("x")

    class Child(Parent):
        pass

    out = run(Child().to_envelope())
    assert out.kind == RETRY and out.run_at - time.time() == pytest.approx(1, abs=0.5)
    keys = [h.key for h in handlers.handlers_for(Child)]
    assert keys[0].endswith("NetError") and keys[1] == "builtins.ConnectionError"


def test_subclass_declarations_come_before_parents():
    @retry_on(ValueError, wait=100, jitter=0)
    class Base(Job):
        def perform(self):
            raise ValueError("x")

    @discard_on(ValueError)
    class Sub(Base):
        pass

    assert run(Sub().to_envelope()).kind == DISCARDED
    assert run(Base().to_envelope()).kind == RETRY


def test_on_exhausted_handles_instead_of_dead():
    handled = []

    @retry_on(KeyError, attempts=1, on_exhausted=lambda job, exc: handled.append((job.job_id, str(exc))))
    class Exhausting(Job):
        def perform(self):
            raise KeyError("k")

    job = Exhausting()
    out = run(job.to_envelope())
    assert out.kind == DISCARDED and handled == [(job.job_id, "'k'")]


def test_unmatched_exception_uses_the_default_policy_then_dead():
    env = AlwaysFailsJob().to_envelope()  # retry_attempts = 2
    first = run(env)
    assert first.kind == RETRY and 16 <= first.run_at - time.time() <= 36
    assert run(first.envelope).kind == DEAD


@pytest.mark.parametrize("count", [1, 2, 5, 10, 25])
def test_polynomially_longer_and_default_backoff_values(count):
    assert handlers.wait_seconds("polynomially_longer", count, Exception()) == count**4 + 2
    rng = random.Random(7)
    for _ in range(50):
        delay = handlers.default_backoff(count, rng)
        assert count**4 + 15 <= delay <= count**4 + 15 + 10 * (count + 1)


def test_wait_forms():
    assert handlers.wait_seconds(7, 1, Exception()) == 7
    assert handlers.wait_seconds(timedelta(minutes=2), 1, Exception()) == 120
    assert handlers.wait_seconds(lambda n, exc: n * 10, 3, Exception()) == 30


def test_jitter_stays_within_bounds():
    rng = random.Random(1)
    values = [handlers.with_jitter(100, 0.15, rng) for _ in range(2000)]
    assert min(values) >= 100 and max(values) <= 115
    assert max(values) - min(values) > 10  # it does vary
    assert handlers.with_jitter(100, 0) == 100


def test_declaration_arguments_are_checked():
    with pytest.raises(TypeError, match="exception classes"):
        retry_on("ValueError")
    with pytest.raises(ValueError, match="attempts"):
        retry_on(ValueError, attempts=0)
    with pytest.raises(ValueError, match="jitter"):
        retry_on(ValueError, jitter=2)
    with pytest.raises(ValueError, match="wait"):
        retry_on(ValueError, wait="sometimes")


@pytest.mark.django_db
def test_deleted_model_is_discardable():
    env = Envelope(job=PurchaseNotificationJob.job_name, args=[{"_dj": "gid", "v": "gid://djjobs/tests.Article/999"}])
    assert run(env).kind == DISCARDED  # @discard_on(DeserializationError)


# --- in the job ----------------------------------------------------------------
def test_job_state_and_hooks():
    seen = []

    class Hooked(Job):
        queue_name = "low"
        priority = 4

        def before_perform(self):
            seen.append("before")

        def around_perform(self, run_it):
            seen.append("around-in")
            result = run_it()
            seen.append("around-out")
            return result

        def perform(self, a, *, b):
            seen.append(("perform", self.arguments, self.kwargs, self.queue_name, self.priority, self.executions,
                         isinstance(self.enqueued_at, datetime), len(self.job_id)))
            return a + b

        def after_perform(self):
            seen.append("after")

    out = run(Hooked(1, b=2).to_envelope())
    assert out.kind == SUCCEEDED and out.result == 3
    assert seen == ["around-in", "before", ("perform", (1,), {"b": 2}, "low", 4, 1, True, 32), "after", "around-out"]


def test_retry_job_reschedules_without_using_attempts():
    class Polite(Job):
        def perform(self):
            if self.executions < 3:
                self.retry_job(wait=timedelta(seconds=30))
            return "done"

    env = Polite().to_envelope()
    for _ in range(2):
        out = run(env)
        assert out.kind == RESCHEDULED and out.envelope.exception_executions == {}
        assert out.run_at - time.time() == pytest.approx(30, abs=1)
        env = out.envelope
    assert run(env).kind == SUCCEEDED


def test_retry_job_cannot_be_swallowed_by_except_exception():
    class Swallower(Job):
        def perform(self):
            try:
                self.retry_job(wait=5)
            except Exception:
                return "swallowed"

    assert run(Swallower().to_envelope()).kind == RESCHEDULED


# --- signals and logging -----------------------------------------------------------
def test_signals_along_the_way(enqueued_jobs, caplog):
    import logging
    caplog.set_level(logging.INFO, logger="djjobs")
    got = []

    def receiver(signal, sender, **kwargs):
        got.append((signal, sender))

    names = ["job_enqueued", "job_started", "job_succeeded", "job_retried", "job_discarded", "job_failed"]
    for name in names:
        getattr(signals, name).connect(receiver)
    try:
        EchoJob.perform_later(1)
        run(EchoJob(1).to_envelope())
        first = run(FlakyJob(5).to_envelope())
        run(FlakyJob(0).to_envelope().copy(args=[0], job=FlakyJob.job_name))
        env = AlwaysFailsJob().to_envelope()
        run(run(env).envelope)
    finally:
        for name in names:
            getattr(signals, name).disconnect(receiver)
    fired = [s for s, _ in got]
    assert fired.count(signals.job_enqueued) == 1 and fired.count(signals.job_succeeded) == 2
    assert fired.count(signals.job_retried) == 2 and fired.count(signals.job_failed) == 1
    assert (signals.job_started, FlakyJob) in got and first.kind == RETRY
    assert any("succeeded tests.jobs.EchoJob" in r.getMessage() for r in caplog.records)
    assert all("args=" not in r.getMessage() for r in caplog.records)  # arguments are not logged by default


# --- registry ------------------------------------------------------------------------
def test_unregistered_job_names_are_refused_not_imported():
    out = run(Envelope(job="os.system", args=["echo pwned"]))
    assert out.kind == DEAD and isinstance(out.error, UnknownJobError)
    assert "not a registered Job class" in out.envelope.error["message"]


def test_abstract_jobs_are_not_registered_and_names_must_be_unique():
    class Base(Job):
        abstract = True

    assert Base.job_name not in djjobs.registry.registered()
    with pytest.raises(UnknownJobError, match="Two Job classes want the name"):
        type("Other", (Job,), {"job_name": EchoJob.job_name, "__module__": "elsewhere", "perform": lambda self: None})


def test_envelopes_decode_in_any_key_order_and_ignore_unknown_fields():
    env = Envelope(job=EchoJob.job_name, args=[1, "\x00"], kwargs={"k": "\U0001F600"}, queue="low", priority=3,
                   executions=2, deaths=1, meta={"m": 1})
    fields = orjson.loads(env.encode())
    assert Envelope.decode(env.encode()) == env
    assert Envelope.decode(orjson.dumps(dict(reversed(fields.items())))) == env
    assert Envelope.decode(orjson.dumps({**fields, "added_by_a_newer_djjobs": True})) == env
    partial = Envelope.decode(orjson.dumps({"job": EchoJob.job_name, "job_id": "abc"}))
    assert (partial.job_id, partial.queue, partial.args, partial.executions) == ("abc", "default", [], 0)


def test_to_envelope_puts_every_field_where_it_belongs():
    from zoneinfo import ZoneInfo
    job = EchoJob.set(wait=60, queue="mail", priority=7).new("a", n=1)
    job.executions, job.exception_executions = 2, {"FatalError": 1}
    job.scheduled_at = datetime(2026, 1, 2, 3, 4, tzinfo=ZoneInfo("Europe/Paris"))
    before = time.time()
    env = job.to_envelope()
    assert (env.job, env.args, env.kwargs, env.queue, env.priority, env.job_id) == \
        (EchoJob.job_name, ["a"], {"n": 1}, "mail", 7, job.job_id)
    assert before <= env.enqueued_at <= time.time() and env.run_at == job.run_at and env.run_at >= before + 59
    assert (env.executions, env.exception_executions, env.deaths, env.error) == (2, {"FatalError": 1}, 0, None)
    assert env.exception_executions is not job.exception_executions
    assert env.scheduled_at == job.scheduled_at.timestamp() and env.meta == {"scheduled_tz": "Europe/Paris"}
    assert env.version == djjobs.envelope.VERSION
    plain = EchoJob("b").to_envelope()
    assert (plain.run_at, plain.scheduled_at, plain.meta, plain.queue) == (None, None, {}, EchoJob.queue_name)


