"""What every ``manage.py jobs`` subcommand shares: the storage call that turns every
expected failure into a :class:`CommandError` saying what is wrong and what to do, JSON
output, times, the "unknown job" explanation, and the confirmation of a destructive step.

Only expected failures are caught (storage unreachable, a feature the adapter lacks, a
setting that is wrong): anything else is a bug and keeps its traceback.
"""
from __future__ import annotations

import contextlib
import sys
from datetime import datetime
from typing import Any, Iterator

import orjson
from django.core.management.base import CommandError

from ..adapters import get_adapter
from ..adapters.base import Adapter
from ..errors import ConfigurationError, UnsupportedFeature
from ..storage_errors import UNAVAILABLE, unavailable_message

#: jobs listed per adapter call when a subcommand works through a whole state
PAGE = 1000


def adapter() -> Adapter:
    try:
        return get_adapter()
    except ConfigurationError as exc:
        raise CommandError(f"{exc}") from exc


@contextlib.contextmanager
def storage(adapter: Adapter, what: str) -> Iterator[None]:
    """Around adapter calls: a storage that is down, or an adapter that cannot ``what``
    ("pause queues"), becomes one CommandError naming it and the fix."""
    try:
        yield
    except UNAVAILABLE as exc:  # Redis or the database is down: say which, and what to do
        raise CommandError(unavailable_message(adapter, exc)) from exc
    except (NotImplementedError, UnsupportedFeature) as exc:
        detail = f" ({exc})" if str(exc) else ""
        raise CommandError(f"The {adapter.name} adapter cannot {what}{detail}. It keeps no jobs of its own to "
                           "manage when it runs them in the process that enqueues them; set DJJOBS['ADAPTER'] "
                           "to 'redis' or 'database' to manage jobs from the command line.") from exc


def write_json(command: Any, data: Any) -> None:
    command.stdout.write(orjson.dumps(data, option=orjson.OPT_INDENT_2, default=str).decode())


def when(value: datetime | None) -> str:
    """A time as the commands print it: ISO 8601 in local time, to the second."""
    return value.astimezone().isoformat(timespec="seconds") if value is not None else "-"


def keeps_finished(adapter: Adapter) -> bool:
    return type(adapter).get_finished is not Adapter.get_finished and adapter.setting("FINISHED_RETENTION_SECONDS") > 0


def unknown_job(adapter: Adapter, job_id: str) -> str:
    """Why a job id may be unknown here, and what to do."""
    if not adapter.durable:
        why = (f"it never existed, was deleted, or has run (the {adapter.name} adapter keeps jobs only in the "
               "memory of the process that enqueued them, and none once they have run)")
    elif keeps_finished(adapter):
        why = (f"it never existed, was deleted, or finished more than FINISHED_RETENTION_SECONDS "
               f"({adapter.setting('FINISHED_RETENTION_SECONDS'):g} s) ago")
    else:
        why = (f"it never existed, was deleted, or finished (the {adapter.name} adapter keeps no record of jobs "
               "that succeeded or were discarded)")
    return (f"No job {job_id!r} in the {adapter.name} adapter's storage: {why}. Check the id (the admin's "
            "job pages and `manage.py jobs status` show what is stored).")


def job_ids(adapter: Adapter, state: str, queue: str | None = None) -> list[str]:
    """Every id of the jobs in ``state`` (of ``queue``), read a page at a time before anything
    changes them (paging while they move would skip some)."""
    ids: list[str] = []
    page = 1
    while True:
        listed = adapter.jobs(state, queue=queue, page=page, per_page=PAGE)
        ids += [record.job_id for record in listed.items]
        if not listed.items or len(ids) >= listed.total:
            return list(dict.fromkeys(ids))
        page += 1


def confirm(command: Any, question: str, yes: bool) -> None:
    """Ask ``question`` on the terminal unless ``yes``; raise CommandError unless answered
    yes. Without a terminal to ask on (a script, cron, a pipe) it refuses: a destructive
    step never happens because nobody was there to say no."""
    if yes:
        return
    if not sys.stdin.isatty():
        raise CommandError(f"{question} — not asked: standard input is not a terminal, so nobody can confirm. "
                           "Nothing was deleted. Pass --yes to run it without asking.")
    command.stdout.write(f"{question} This cannot be undone. [y/N] ", ending="")
    command.stdout.flush()
    answer = sys.stdin.readline().strip().lower()
    if answer not in ("y", "yes"):
        raise CommandError("Nothing was deleted: the purge was not confirmed (answer 'y' to confirm, or pass --yes).")


def add_json(parser: Any) -> None:
    parser.add_argument("--json", action="store_true", help="Print JSON instead of a table (for scripts).")
