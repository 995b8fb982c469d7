"""Cron: tick computation (DST included), exactly-once enqueue, catch-up, checks."""
from datetime import datetime
from io import StringIO
from zoneinfo import ZoneInfo

import pytest
import time_machine
from django.core.checks import run_checks
from django.core.management import call_command
from django.test import override_settings

from djjobs.adapters.memory import MemoryAdapter
from djjobs.cron import Scheduler, parse_entry
from djjobs.envelope import Envelope
from tests.jobs import EchoJob

BERLIN = ZoneInfo("Europe/Berlin")
UTC = ZoneInfo("UTC")


def entry(cron="0 0 * * *", **kw):
    return parse_entry("e", {"cron": cron, "job": "tests.jobs.EchoJob", **kw})


def ts(*args, tz=UTC):
    return datetime(*args, tzinfo=tz).timestamp()


def local(tick, tz=BERLIN):
    return datetime.fromtimestamp(tick, tz)


def test_daily_ticks_and_next_runs():
    e = entry("0 0 * * *")
    assert list(e.ticks(ts(2026, 1, 1, 12), ts(2026, 1, 4, 12))) == [ts(2026, 1, 2), ts(2026, 1, 3), ts(2026, 1, 4)]
    assert e.latest_tick(ts(2026, 1, 4, 12)) == ts(2026, 1, 4)
    assert e.latest_tick(ts(2026, 1, 4)) == ts(2026, 1, 4)  # a tick exactly now is due
    assert [d.day for d in e.next_runs(3, now=ts(2026, 1, 1, 12))] == [2, 3, 4]


def test_aliases_and_six_field_seconds():
    assert entry("@hourly").latest_tick(ts(2026, 1, 1, 5, 59)) == ts(2026, 1, 1, 5)
    every_20s = entry("* * * * * */20")  # croniter's six-field form: seconds last
    assert list(every_20s.ticks(ts(2026, 1, 1, 0, 0, 5), ts(2026, 1, 1, 0, 1, 0))) == [
        ts(2026, 1, 1, 0, 0, 20), ts(2026, 1, 1, 0, 0, 40), ts(2026, 1, 1, 0, 1, 0)]


def test_a_wall_time_that_does_not_exist_is_skipped():
    # 2026-03-29 02:00 -> 03:00 in Berlin: 02:30 does not exist that day
    e = entry("30 2 * * *", timezone="Europe/Berlin")
    days = [local(t).date().day for t in e.ticks(ts(2026, 3, 27, 12), ts(2026, 3, 31, 12))]
    assert days == [28, 30, 31]
    assert all(local(t).hour == 2 and local(t).minute == 30 for t in e.ticks(ts(2026, 3, 27, 12), ts(2026, 3, 31, 12)))


def test_a_repeated_wall_time_runs_once():
    # 2026-10-25 03:00 -> 02:00 in Berlin: 02:00-02:59 happens twice
    daily = entry("30 2 * * *", timezone="Europe/Berlin")
    ticks = list(daily.ticks(ts(2026, 10, 24, 12), ts(2026, 10, 26, 12)))
    assert [local(t).day for t in ticks] == [25, 26]
    assert local(ticks[0]).fold == 0  # the first occurrence
    hourly = entry("0 * * * *", timezone="Europe/Berlin")
    hours = [local(t).hour for t in hourly.ticks(ts(2026, 10, 24, 22), ts(2026, 10, 25, 4))]  # (00:00, 05:00] local, 6 real hours
    assert hours == [1, 2, 3, 4, 5]


@pytest.fixture
def adapter():
    return MemoryAdapter()


def enqueued(adapter):
    return [r.envelope for r in adapter.jobs("ready", per_page=1000).items]


def test_the_scheduler_enqueues_each_tick_once_across_schedulers(adapter):
    e = entry("0 * * * *", args=[1], kwargs={"k": "v"}, queue="low")
    with time_machine.travel(ts(2026, 5, 1, 9, 59, 30), tick=False):
        schedulers = [Scheduler(adapter, [e]) for _ in range(3)]
    for s in schedulers:
        assert s.tick(now=ts(2026, 5, 1, 9, 59, 59)) == []
    results = [s.tick(now=ts(2026, 5, 1, 10, 0, 0, 500)) for s in schedulers]
    assert sorted(len(r) for r in results) == [0, 0, 1]
    [env] = enqueued(adapter)
    assert (env.job, env.args, env.kwargs, env.queue) == (EchoJob.job_name, [1], {"k": "v"}, "low")
    assert env.scheduled_at == ts(2026, 5, 1, 10)
    for s in schedulers:
        s.tick(now=ts(2026, 5, 1, 10, 30))
    assert len(enqueued(adapter)) == 1
    state = adapter.cron_states()["e"]
    assert state["last_tick"] == ts(2026, 5, 1, 10) and state["last_outcome"] == "enqueued"


def test_the_job_sees_the_tick_it_belongs_to(adapter):
    seen = []

    class TickJob(EchoJob):
        def perform(self):
            seen.append(self.scheduled_at)

    e = parse_entry("t", {"cron": "0 0 * * *", "job": TickJob.job_name, "timezone": "Europe/Berlin"})
    with time_machine.travel(ts(2026, 5, 1, 21, 59, tz=UTC), tick=False):
        s = Scheduler(adapter, [e])
    s.tick(now=ts(2026, 5, 2, tz=BERLIN) + 2)
    [claim] = adapter.fetch(["default"], 1, 0, "w")
    from djjobs.worker.processor import process
    process(adapter, claim)
    assert seen == [datetime(2026, 5, 2, tzinfo=BERLIN)]


def test_catch_up_latest_enqueues_only_the_latest_missed_tick(adapter):
    e = entry("0 0 * * *")
    adapter.set_cron_state("e", {"last_tick": ts(2026, 1, 1)})
    with time_machine.travel(ts(2026, 1, 6, 12), tick=False):
        s = Scheduler(adapter, [e])
        assert s.tick() == [("e", ts(2026, 1, 6))]
        assert s.tick() == []
    assert len(enqueued(adapter)) == 1


def test_catch_up_none_skips_missed_ticks(adapter):
    e = entry("0 0 * * *", catch_up="none")
    adapter.set_cron_state("e", {"last_tick": ts(2026, 1, 1)})
    with time_machine.travel(ts(2026, 1, 6, 12), tick=False):
        s = Scheduler(adapter, [e])
        assert s.tick() == []
    assert s.tick(now=ts(2026, 1, 7)) == [("e", ts(2026, 1, 7))]


def test_a_new_entry_starts_from_now(adapter):
    with time_machine.travel(ts(2026, 1, 6, 12), tick=False):
        s = Scheduler(adapter, [entry("0 0 * * *")])
        assert s.tick() == []


def test_run_now_enqueues_without_claiming_a_tick(adapter):
    s = Scheduler(adapter, [entry("0 0 * * *")])
    job = s.run_now("e")
    assert [env.job_id for env in enqueued(adapter)] == [job.job_id]
    assert adapter.cron_states()["e"]["last_outcome"] == "run now"
    assert "last_tick" not in adapter.cron_states()["e"]


def test_a_failed_enqueue_is_recorded_and_does_not_stop_the_scheduler(adapter):
    s = Scheduler(adapter, [entry("0 0 * * *")])
    adapter.options["MAX_PAYLOAD_BYTES"] = 10
    s.started_at = ts(2026, 1, 1, 12)
    assert s.tick(now=ts(2026, 1, 2, 0, 0, 1)) == []
    assert adapter.cron_states()["e"]["last_outcome"].startswith("failed: EnqueueError")


@pytest.mark.parametrize("spec, check_id, text", [
    ({"cron": "61 * * * *", "job": "tests.jobs.EchoJob"}, "djjobs.E011", "bad cron expression"),
    ({"cron": "0 0 * * *", "job": "nope.Missing"}, "djjobs.E012", "not a registered Job"),
    ({"cron": "0 0 * * *", "job": "tests.jobs.EchoJob", "timezone": "Mars/Olympus"}, "djjobs.E013", "unknown timezone"),
    ({"cron": "0 0 * * *", "job": "tests.jobs.EchoJob", "args": [object()]}, "djjobs.E014", "do not serialize"),
    ({"cron": "0 0 * * *", "job": "tests.jobs.EchoJob", "when": 1}, "djjobs.E010", "unknown key"),
    ({"cron": "0 0 * * *", "job": "tests.jobs.EchoJob", "catch_up": "all"}, "djjobs.E010", "catch_up"),
    ({"cron": "0 0 30 2 *", "job": "tests.jobs.EchoJob"}, "djjobs.E011", "never fires"),
    ({"cron": "R * * * *", "job": "tests.jobs.EchoJob"}, "djjobs.E011", "no random 'R'"),
    ({"cron": "0 0 * * *", "job": "tests.jobs.EchoJob", "args": 5}, "djjobs.E014", "'args' must be a list"),
    ({"cron": "0 0 * * *", "job": "tests.jobs.EchoJob", "kwargs": [1]}, "djjobs.E014", "'kwargs' a dict with str keys"),
    ({"cron": "0 0 * * *", "job": "tests.jobs.EchoJob", "priority": "high"}, "djjobs.E010", "'priority' must be an int"),
])
def test_bad_entries_are_named_system_check_errors(spec, check_id, text):
    with override_settings(DJJOBS={"ADAPTER": "test", "CRON": {"bad": spec}}):
        errors = [e for e in run_checks(tags=["djjobs"]) if e.id.startswith("djjobs")]
    assert [e.id for e in errors] == [check_id]
    assert text in errors[0].msg and "'bad'" in errors[0].msg


def test_job_may_be_named_by_a_unique_suffix():
    assert parse_entry("x", {"cron": "@daily", "job": "jobs.EchoJob"}).job_class() is EchoJob


def test_jobs_cron_list_prints_next_runs():
    out = StringIO()
    with override_settings(DJJOBS={"ADAPTER": "test", "CRON": {
            "nightly": {"cron": "0 3 * * *", "job": "tests.jobs.EchoJob", "timezone": "Europe/Berlin"}}}):
        call_command("jobs_cron", "--list", stdout=out)
    text = out.getvalue()
    assert text.startswith("nightly: '0 3 * * *' Europe/Berlin -> tests.jobs.EchoJob")
    assert text.count("T03:00:00+0") == 3


def test_envelope_keeps_scheduled_at():
    env = Envelope(job="x", scheduled_at=123.0)
    assert Envelope.decode(env.encode()).scheduled_at == 123.0


def test_the_job_keeps_the_entrys_time_zone(adapter):
    from djjobs.job import Job
    e = parse_entry("t", {"cron": "0 0 * * *", "job": "tests.jobs.EchoJob", "timezone": "America/Los_Angeles"})
    with time_machine.travel(ts(2026, 5, 1, 12), tick=False):
        s = Scheduler(adapter, [e])
    s.tick(now=ts(2026, 5, 2, tz=ZoneInfo("America/Los_Angeles")) + 1)
    [env] = enqueued(adapter)
    job = Job.from_envelope.__func__(EchoJob, env)
    assert job.scheduled_at == datetime(2026, 5, 2, tzinfo=ZoneInfo("America/Los_Angeles"))
    assert str(job.scheduled_at.tzinfo) == "America/Los_Angeles"


def test_day_and_month_names_are_not_taken_for_random_fields():
    assert parse_entry("x", {"cron": "0 9 * MAR THU", "job": "tests.jobs.EchoJob"}).cron == "0 9 * MAR THU"


def test_an_entry_whose_ticks_fail_does_not_stop_the_others(adapter):
    from djjobs.cron import CronEntry
    good = entry("0 * * * *")
    broken = CronEntry("broken", "0 0 30 2 *", "tests.jobs.EchoJob", [], {}, None, None, "UTC", "latest")
    with time_machine.travel(ts(2026, 5, 1, 9, 59, 30), tick=False):
        s = Scheduler(adapter, [broken, good])
    assert s.tick(now=ts(2026, 5, 1, 10, 0, 1)) == [("e", ts(2026, 5, 1, 10))]
    assert broken.next_runs(1) == []


def test_a_tick_of_a_unique_job_whose_key_is_held_enqueues_nothing(adapter):
    """The tick is done (it is not tried again), nothing is stored, and the entry's last
    outcome says why."""
    from djjobs import Job

    class NightlyJob(Job):
        job_name = "tests.test_cron.NightlyJob"
        unique_for = 86400

        def perform(self):
            pass
    try:
        e = parse_entry("n", {"cron": "0 * * * *", "job": NightlyJob.job_name})
        with time_machine.travel(ts(2026, 5, 1, 9, 59, 30), tick=False):
            s = Scheduler(adapter, [e])
        assert len(s.tick(now=ts(2026, 5, 1, 10, 0, 1))) == 1
        [first] = adapter.jobs("ready").items
        assert len(s.tick(now=ts(2026, 5, 1, 11, 0, 1))) == 1  # the first one has not run: its key is held
        assert [r.job_id for r in adapter.jobs("ready").items] == [first.job_id]
        state = adapter.cron_states()["n"]
        assert state["last_outcome"] == "duplicate" and state["last_job_id"] == first.job_id
        assert state["last_tick"] == ts(2026, 5, 1, 11)
    finally:
        from djjobs import registry
        registry._jobs.pop("tests.test_cron.NightlyJob")
