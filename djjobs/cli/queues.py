"""Subcommands on whole queues and sets: ``purge``, ``pause``, ``resume``.

``purge`` deletes for good, so it asks first, on the terminal, unless ``--yes``; with no
terminal to ask on (a script, cron) and no ``--yes`` it refuses, deleting nothing."""
from __future__ import annotations

from typing import Any

from django.core.management.base import CommandError

from .. import conf
from .common import adapter as configured_adapter, confirm, job_ids, storage

SETS = ("dead", "scheduled", "retry", "cancelled")


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("purge", help="Delete every ready job of a queue, or every dead/scheduled/retry job.",
                              description="Delete, for good, every ready job of QUEUE, or every job of one set "
                                          "(--dead, --scheduled, --retry, --cancelled). Asks for confirmation "
                                          "unless --yes; without a terminal and without --yes it refuses.")
    p.add_argument("queue", nargs="?", metavar="QUEUE", help="A queue whose ready jobs to delete.")
    for name in SETS:
        p.add_argument(f"--{name}", action="store_true", help=f"Delete every {name} job instead.")
    p.add_argument("--yes", action="store_true", help="Do not ask for confirmation.")
    p.set_defaults(run=run_purge)
    for name, text in (("pause", "Stop workers fetching from QUEUE (enqueueing still works)."),
                       ("resume", "Let workers fetch from a paused QUEUE again.")):
        p = subparsers.add_parser(name, help=text, description=text)
        p.add_argument("queue", metavar="QUEUE", help="A queue name.")
        p.set_defaults(run=run_pause if name == "pause" else run_resume)


def _queue(name: str) -> str:
    try:
        return conf.check_queue_name(name)
    except ValueError as exc:
        raise CommandError(str(exc)) from None


def run_purge(command: Any, options: dict) -> None:
    chosen = [name for name in SETS if options.get(name)]
    queue = options.get("queue")
    if len(chosen) + (queue is not None) != 1:
        raise CommandError("Say what to purge, one thing: a QUEUE (its ready jobs), or one of --dead, --scheduled, "
                           "--retry, --cancelled. E.g. `jobs purge default` or `jobs purge --dead`.")
    adapter = configured_adapter()
    with storage(adapter, "delete jobs"):
        if queue is not None:
            queue = _queue(queue)
            size = sum(q.size for q in adapter.queues() if q.name == queue)
            what = f"ready job(s) of queue {queue!r}"
            if not size:
                command.stdout.write(f"Nothing to purge: queue {queue!r} has no ready jobs.")
                return
            confirm(command, f"Delete {size:,} {what}?", options.get("yes", False))
            deleted = adapter.clear(queue)
        else:
            state = chosen[0]
            ids = job_ids(adapter, state)
            what = f"{state} job(s)"
            if not ids:
                command.stdout.write(f"Nothing to purge: there are no {state} jobs.")
                return
            confirm(command, f"Delete {len(ids):,} {what}?", options.get("yes", False))
            deleted = sum(adapter.delete(ids[n:n + 1000]) for n in range(0, len(ids), 1000))
    command.stdout.write(f"Deleted {deleted:,} {what}.")


def run_pause(command: Any, options: dict) -> None:
    queue = _queue(options["queue"])
    adapter = configured_adapter()
    with storage(adapter, "pause queues"):
        known = {q.name for q in adapter.queues()} | set(conf.get("QUEUES"))
        adapter.pause(queue)
    command.stdout.write(f"Paused queue {queue!r}: workers stop fetching from it; jobs enqueued meanwhile wait. "
                         f"Resume it with `manage.py jobs resume {queue}`.")
    if queue not in known:
        command.stdout.write(f"Note: no job and no DJJOBS['QUEUES'] entry has the name {queue!r} yet; check its "
                             "spelling.")


def run_resume(command: Any, options: dict) -> None:
    queue = _queue(options["queue"])
    adapter = configured_adapter()
    with storage(adapter, "resume queues"):
        paused = any(q.paused for q in adapter.queues() if q.name == queue)
        adapter.resume(queue)
    command.stdout.write(f"Resumed queue {queue!r}: workers fetch from it again." if paused else
                         f"Queue {queue!r} was not paused; nothing changed.")
