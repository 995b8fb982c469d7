"""Cron: enqueue jobs on a schedule, exactly once per tick however many schedulers run.

Schedule (``DJJOBS["CRON"]``)::

    {"daily-statistics": {"cron": "0 0 * * *", "job": "store.jobs.DailyStatisticsJob",
                          "args": [], "kwargs": {}, "queue": "low", "priority": 0,
                          "timezone": "Europe/Berlin", "catch_up": "latest"}}

Expressions are croniter's: five fields, ``@daily``/``@hourly``/…, or six
fields with seconds last. Ticks are computed on the entry's wall clock: a
wall time that does not exist (spring forward) is skipped; one that occurs
twice (fall back) runs once, at its first occurrence.

Exactly once: each (entry, tick) is claimed through the adapter's atomic
``claim_tick`` before it is enqueued, so any number of schedulers may run.
On the database adapter claim and enqueue share one transaction; elsewhere a
scheduler that dies between the two loses that one tick (at-most-once per
tick, never twice).

Catch-up: after downtime, ``"latest"`` (default) enqueues the latest missed
tick once, not a burst; ``"none"`` skips missed ticks. An entry seen for the
first time starts from now.
"""
from __future__ import annotations

import dataclasses
import logging
import re
import time
from datetime import datetime, timedelta, timezone
from typing import Any, Iterator
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter
from django.db import transaction

from . import arguments, conf, registry
from .adapters import get_adapter
from .adapters.base import Adapter
from .errors import ConfigurationError, DjJobsError, UnknownJobError

logger = logging.getLogger("djjobs")
KEYS = {"cron", "job", "args", "kwargs", "queue", "priority", "timezone", "catch_up"}


@dataclasses.dataclass
class CronEntry:
    name: str
    cron: str
    job: str
    args: list = dataclasses.field(default_factory=list)
    kwargs: dict = dataclasses.field(default_factory=dict)
    queue: str | None = None
    priority: int | None = None
    timezone: str = "UTC"
    catch_up: str = "latest"

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def job_class(self):
        return resolve_job(self.job)

    def ticks(self, after: float, until: float) -> Iterator[float]:
        """Tick timestamps in (after, until], in order."""
        zone = self.zone
        wall = datetime.fromtimestamp(after, zone).replace(tzinfo=None)
        it = croniter(self.cron, wall)
        for _ in range(100_000):
            naive = it.get_next(datetime)
            tick = _to_timestamp(naive, zone)
            if tick is None:
                continue  # this wall time does not exist today (spring forward)
            if tick > until:
                return
            if tick > after:
                yield tick

    def latest_tick(self, until: float) -> float | None:
        """The last tick at or before ``until`` (None if there is none in ten years)."""
        zone = self.zone
        wall = datetime.fromtimestamp(until, zone).replace(tzinfo=None) + timedelta(microseconds=1)
        it = croniter(self.cron, wall)
        for _ in range(10_000):
            tick = _to_timestamp(it.get_prev(datetime), zone)
            if tick is not None and tick <= until:
                return tick
        return None

    def next_runs(self, count: int = 3, now: float | None = None) -> list[datetime]:
        """The next ``count`` run times (fewer, or none, when they cannot be computed)."""
        start = time.time() if now is None else now
        result = []
        try:
            for tick in self.ticks(start, start + 10 * 366 * 86400):
                result.append(datetime.fromtimestamp(tick, self.zone))
                if len(result) == count:
                    break
        except Exception as exc:
            logger.error("Cron %s: cannot compute its next runs: %s: %s", self.name, type(exc).__name__, exc)
        return result


def _to_timestamp(naive: datetime, zone: ZoneInfo) -> float | None:
    first = naive.replace(tzinfo=zone, fold=0)
    back = first.astimezone(timezone.utc).astimezone(zone).replace(tzinfo=None)
    if back != naive:
        return None
    return first.timestamp()


def resolve_job(name: str):
    """The registered class named ``name`` exactly, or the one whose registered name ends in ``.name``."""
    jobs = registry.registered()
    if name in jobs:
        return jobs[name]
    matches = [cls for full, cls in jobs.items() if full.endswith("." + name)]
    if len(matches) == 1:
        return matches[0]
    if len(matches) > 1:
        raise UnknownJobError(f"Cron job {name!r} is ambiguous: " + ", ".join(c.job_name for c in matches))
    return registry.resolve(name)


def parse_entries(raw: Any) -> tuple[list[CronEntry], list[tuple[str, str]]]:
    """Entries from the CRON setting, and (check id, message) for every problem."""
    entries, problems = [], []
    if not isinstance(raw, dict):
        return [], [("djjobs.E010", f"DJJOBS['CRON'] must be a dict of name -> entry, not {type(raw).__name__}.")]
    for name, spec in raw.items():
        try:
            entries.append(parse_entry(name, spec))
        except ConfigurationError as exc:
            problems.append((exc.args[1] if len(exc.args) > 1 else "djjobs.E010", exc.args[0]))
    return entries, problems


def parse_entry(name: str, spec: Any) -> CronEntry:
    def bad(message: str, check_id: str = "djjobs.E010"):
        return ConfigurationError(f"DJJOBS['CRON'][{name!r}]: {message}", check_id)
    if not isinstance(spec, dict):
        raise bad("must be a dict with at least 'cron' and 'job'.")
    unknown = set(spec) - KEYS
    if unknown:
        raise bad(f"unknown key(s) {sorted(unknown)}; allowed: {sorted(KEYS)}.")
    expression = spec.get("cron")
    if not isinstance(expression, str) or not croniter.is_valid(expression) \
            or re.search(r"(^|[\s,])[RH]($|[\s,(/])", expression.upper()):
        raise bad(f"bad cron expression {expression!r}: use five fields ('0 0 * * *'), "
                  "'@daily'/'@hourly'/…, or six with seconds last (no random 'R' or hashed 'H' fields: every "
                  "scheduler must compute the same ticks).", "djjobs.E011")
    try:  # valid syntax can still never fire ('0 0 30 2 *': 30 February)
        it = croniter(expression, datetime(2000, 1, 1))
        it.get_next(datetime)
        it.get_prev(datetime)
    except Exception as exc:
        raise bad(f"cron expression {expression!r} never fires ({exc}).", "djjobs.E011") from None
    args, kwargs = spec.get("args", []), spec.get("kwargs", {})
    if not isinstance(args, (list, tuple)) or not isinstance(kwargs, dict) \
            or not all(isinstance(k, str) for k in kwargs):
        raise bad("'args' must be a list and 'kwargs' a dict with str keys.", "djjobs.E014")
    entry = CronEntry(name, expression, spec.get("job"), list(args), dict(kwargs),
                      spec.get("queue"), spec.get("priority"), spec.get("timezone", "UTC"), spec.get("catch_up", "latest"))
    if entry.priority is not None:
        from .job import check_priority
        try:
            check_priority(entry.priority, "'priority'")
        except (TypeError, ValueError) as exc:
            raise bad(str(exc)) from None
    try:
        entry.job_class()
    except (UnknownJobError, TypeError) as exc:
        raise bad(f"job {entry.job!r} is not a registered Job class ({exc})", "djjobs.E012") from None
    try:
        entry.zone
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        raise bad(f"unknown timezone {entry.timezone!r}: use an IANA name like 'Europe/Berlin'.", "djjobs.E013") from None
    try:
        arguments.serialize(entry.args, entry.kwargs)
    except DjJobsError as exc:
        raise bad(f"arguments do not serialize: {exc}", "djjobs.E014") from None
    if entry.catch_up not in ("latest", "none"):
        raise bad(f"catch_up must be 'latest' or 'none', not {entry.catch_up!r}.")
    if entry.queue is not None:
        try:
            conf.check_queue_name(entry.queue)
        except ValueError as exc:
            raise bad(str(exc)) from None
    return entry


def entries() -> list[CronEntry]:
    found, problems = parse_entries(conf.get("CRON"))
    if problems:
        raise ConfigurationError("; ".join(message for _, message in problems))
    return found


class Scheduler:
    """Enqueues due ticks. ``tick(now)`` is one pass; ``run()`` loops until stopped.
    Safe to run in many processes at once."""

    def __init__(self, adapter: Adapter | None = None, cron_entries: list[CronEntry] | None = None):
        self.adapter = adapter or get_adapter()
        self.entries = entries() if cron_entries is None else cron_entries
        self.started_at = time.time()

    def tick(self, now: float | None = None) -> list[tuple[str, float]]:
        now = time.time() if now is None else now
        states = self.adapter.cron_states()
        enqueued = []
        for entry in self.entries:
            last = states.get(entry.name, {}).get("last_tick")
            fresh = last is None or (entry.catch_up == "none" and last < self.started_at)
            since = self.started_at - 1 if fresh else last
            try:  # one entry's trouble never stops the others
                tick = entry.latest_tick(now)  # after downtime: the latest missed tick only, never a burst
            except Exception as exc:
                logger.error("Cron %s: cannot compute its ticks: %s: %s", entry.name, type(exc).__name__, exc)
                continue
            if tick is None or tick <= since:
                continue
            if self._enqueue_tick(entry, tick):
                enqueued.append((entry.name, tick))
        return enqueued

    def _enqueue_tick(self, entry: CronEntry, tick: float) -> bool:
        try:
            with _atomic_if(self.adapter):
                if not self.adapter.claim_tick(entry.name, tick):
                    return False
                job = self.enqueue(entry, tick)
        except Exception as exc:
            logger.error("Cron %s: enqueue for %s failed: %s: %s", entry.name, _iso(tick), type(exc).__name__, exc)
            self._record(entry, tick, None, f"failed: {type(exc).__name__}: {exc}")
            return False
        if job.duplicate:  # a unique job class whose key is held: this tick adds nothing
            logger.info("Cron %s: tick %s not enqueued: job %s holds its uniqueness key", entry.name, _iso(tick),
                        job.job_id)
            self._record(entry, tick, job.job_id, "duplicate")
            return True
        logger.info("Cron %s: enqueued %s id=%s for tick %s", entry.name, entry.job, job.job_id, _iso(tick))
        self._record(entry, tick, job.job_id, "enqueued")
        return True

    def enqueue(self, entry: CronEntry, tick: float):
        job = entry.job_class()(*entry.args, **entry.kwargs)
        job.scheduled_at = datetime.fromtimestamp(tick, entry.zone)
        job.configure(queue=entry.queue, priority=entry.priority)
        from .transaction import store
        holder = store(self.adapter, [job.to_envelope()]).get(job.job_id)
        if holder is not None:
            job.job_id, job.duplicate = holder, True
        return job

    def run_now(self, name: str):
        """Enqueue an entry at once (the admin's "run now"); claims no tick."""
        entry = next(e for e in self.entries if e.name == name)
        job = self.enqueue(entry, time.time())
        self._record(entry, None, job.job_id, "run now")
        return job

    def _record(self, entry: CronEntry, tick: float | None, job_id: str | None, outcome: str) -> None:
        state = dict(self.adapter.cron_states().get(entry.name, {}))
        if tick is not None and outcome in ("enqueued", "duplicate"):  # the tick is done either way
            state["last_tick"] = max(tick, state.get("last_tick") or 0)
        state.update(last_enqueued_at=time.time(), last_job_id=job_id, last_outcome=outcome)
        try:
            self.adapter.set_cron_state(entry.name, state)
        except Exception as exc:
            logger.error("Cron %s: could not store its state: %s", entry.name, exc)

    def run(self, stop, interval: float = 1.0) -> None:
        """Tick about every ``interval`` seconds until ``stop`` (a threading.Event) is set."""
        while not stop.is_set():
            try:
                self.tick()
            except Exception as exc:
                logger.error("Cron pass failed: %s: %s", type(exc).__name__, exc)
            stop.wait(interval - (time.time() % interval) + 0.01)


class _atomic_if:
    """One transaction around claim + enqueue when the adapter writes to the database."""

    def __init__(self, adapter: Adapter):
        self.atomic = transaction.atomic(using=adapter.setting("DATABASE")) if adapter.transactional_enqueue else None

    def __enter__(self):
        return self.atomic.__enter__() if self.atomic else None

    def __exit__(self, *exc):
        return self.atomic.__exit__(*exc) if self.atomic else False


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).isoformat()


__all__ = ["CronEntry", "Scheduler", "entries", "parse_entries", "parse_entry", "resolve_job", "timedelta"]
