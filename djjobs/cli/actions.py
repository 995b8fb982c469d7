"""Subcommands that change one job (or the dead set): ``enqueue``, ``retry``, ``cancel``,
``delete``.

``enqueue`` takes only a registered Job class, by its ``job_name`` (what payloads carry):
nothing named on the command line is ever imported, as a worker never imports a payload's
class either."""
from __future__ import annotations

import difflib
import inspect
import math
from typing import Any

import orjson
from django.core.management.base import CommandError

from .. import conf, registry
from ..errors import DjJobsError
from ..job_status import status
from .common import adapter as configured_adapter, job_ids, storage, unknown_job, when

RETRYABLE = ("scheduled", "retry", "dead", "cancelled")


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("enqueue", help="Enqueue a registered Job class with JSON arguments.",
                              description="Enqueue JOB_CLASS (a registered Job class, by its job_name, e.g. "
                                          "myapp.jobs.SendReceipt) with ARGS_JSON: a JSON list of positional "
                                          "arguments or a JSON object of keyword arguments (default: none).")
    p.add_argument("job_class", metavar="JOB_CLASS", help="The job's registered name (its job_name).")
    p.add_argument("args_json", nargs="?", default="[]", metavar="ARGS_JSON",
                   help='Arguments: \'[1, "a"]\' (positional) or \'{"user_id": 1}\' (keyword).')
    p.add_argument("--queue", help="Queue to use instead of the class' queue_name.")
    p.add_argument("--wait", type=float, metavar="SECONDS", help="Run no sooner than SECONDS from now.")
    p.add_argument("--priority", type=int, help="Priority within the queue (higher runs first).")
    p.set_defaults(run=run_enqueue)
    p = subparsers.add_parser("retry", help="Run a scheduled, retrying, dead or cancelled job now.",
                              description="Move a scheduled, retrying, dead or cancelled job (or, with "
                                          "--all-dead, every dead job) back to its queue, to run now.")
    p.add_argument("job_id", nargs="?", metavar="JOB_ID", help="A job id.")
    p.add_argument("--all-dead", action="store_true", help="Retry every dead job (of --queue).")
    p.add_argument("--queue", help="With --all-dead: only the dead jobs of this queue.")
    p.set_defaults(run=run_retry)
    p = subparsers.add_parser("cancel", help="Cancel a job (djjobs.cancel).",
                              description="Cancel a job that has not run (it never will), or ask a running "
                                          "one to stop (docs/cancellation.md).")
    p.add_argument("job_id", metavar="JOB_ID", help="A job id.")
    p.set_defaults(run=run_cancel)
    p = subparsers.add_parser("delete", help="Delete a job that is not running.",
                              description="Delete a job that is not running (ready, scheduled, retrying, "
                                          "blocked, waiting, dead or cancelled), for good.")
    p.add_argument("job_id", metavar="JOB_ID", help="A job id.")
    p.set_defaults(run=run_delete)


def run_enqueue(command: Any, options: dict) -> None:
    name = options["job_class"]
    cls = registry.lookup(name)
    if cls is None:
        raise CommandError(_unknown_class(name))
    args, kwargs = _arguments(options["args_json"])
    try:
        inspect.signature(cls.perform).bind(None, *args, **kwargs)
    except TypeError as exc:
        raise CommandError(f"These arguments do not fit {name}.perform{_signature(cls)}: {exc}. Pass ARGS_JSON "
                           "as a JSON list (positional) or object (keyword) that fits it.") from None
    wait = options.get("wait")
    if wait is not None and (not math.isfinite(wait) or wait < 0):
        raise CommandError(f"--wait must be a number of seconds >= 0, not {wait}.")
    queue = options.get("queue")
    try:
        if queue is not None:
            conf.check_queue_name(queue)
        configured = cls.set(queue=queue, wait=wait, priority=options.get("priority"))
    except (TypeError, ValueError) as exc:
        raise CommandError(f"{exc}") from None
    adapter = configured_adapter()
    with storage(adapter, "enqueue jobs"):
        try:
            job = configured.perform_later(*args, **kwargs)
        except (DjJobsError, TypeError) as exc:
            raise CommandError(f"{name} was not enqueued: {exc}") from None
    if getattr(job, "duplicate", False):
        command.stdout.write(f"Not enqueued: a {name} job with the same unique key is stored already, "
                             f"job {job.job_id} (the class' unique_conflict is 'skip').")
        return
    where = f"on queue {job.queue_name!r}"
    if job.run_at is not None and wait:
        from datetime import datetime, timezone
        where += f", to run at {when(datetime.fromtimestamp(job.run_at, timezone.utc))}"
    command.stdout.write(f"Enqueued {name} as job {job.job_id} {where}.")
    if not adapter.durable:
        command.stdout.write(f"(The {adapter.name} adapter runs jobs in the process that enqueues them: it ran "
                             "here, not on a worker.)")


def _unknown_class(name: str) -> str:
    names = sorted(registry.registered())
    close = difflib.get_close_matches(name, names, n=1, cutoff=0.6) or [n for n in names if
                                                                          n.rsplit(".", 1)[-1] == name]
    hint = f" Did you mean {close[0]!r}?" if close else ""
    shown = ", ".join(names[:30]) + (f", … ({len(names) - 30} more)" if len(names) > 30 else "")
    return (f"{name!r} is not a registered Job class.{hint} Name a class by its job_name (usually "
            f"<module>.<ClassName>); registered here: {shown or '(none)'}. Job classes register when their module "
            "is imported: define them in <app>/jobs.py of an installed app, or list their modules in "
            "DJJOBS['JOB_MODULES'].")


def _arguments(text: str) -> tuple[list, dict]:
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise CommandError(f"ARGS_JSON is not valid JSON ({exc}). Quote it for the shell, e.g. '[1, \"a\"]' or "
                           "'{\"user_id\": 1}'.") from None
    if isinstance(value, list):
        return value, {}
    if isinstance(value, dict):
        return [], value
    raise CommandError(f"ARGS_JSON must be a JSON list (positional arguments) or object (keyword arguments), not a "
                       f"JSON {type(value).__name__}: wrap a single argument in a list, e.g. '[{text}]'.")


def _signature(cls: Any) -> str:
    try:
        sig = inspect.signature(cls.perform)
        return str(sig.replace(parameters=list(sig.parameters.values())[1:]))
    except (TypeError, ValueError):
        return "(...)"


def run_retry(command: Any, options: dict) -> None:
    job_id, all_dead, queue = options.get("job_id"), options.get("all_dead"), options.get("queue")
    if bool(job_id) == bool(all_dead):
        raise CommandError("Give a JOB_ID or --all-dead (not both, not neither): `jobs retry JOB_ID` or "
                           "`jobs retry --all-dead [--queue NAME]`.")
    if queue and not all_dead:
        raise CommandError("--queue applies to --all-dead only; `jobs retry JOB_ID` retries that job wherever it "
                           "is.")
    adapter = configured_adapter()
    with storage(adapter, "retry jobs"):
        if all_dead:
            ids = job_ids(adapter, "dead", queue)
            moved = sum(adapter.retry_now(ids[n:n + 1000]) for n in range(0, len(ids), 1000))
            of = f" of queue {queue!r}" if queue else ""
            command.stdout.write(f"Retried {moved:,} dead job(s){of}: back in their queues, to run now."
                                 if moved else f"No dead jobs{of} to retry.")
            return
        if adapter.retry_now([job_id]):
            command.stdout.write(f"Job {job_id} is back in its queue, to run now.")
            return
        found = status(job_id)
    if not found.known:
        raise CommandError(unknown_job(adapter, job_id))
    raise CommandError(f"Job {job_id} is {found.state}: only {', '.join(RETRYABLE[:-1])} or {RETRYABLE[-1]} jobs can "
                       "be retried" + (" (it is already waiting for a worker)." if found.state == "ready" else
                                       " (it runs now)." if found.state == "running" else "."))


def run_cancel(command: Any, options: dict) -> None:
    from ..cancellation import CANCELLED, cancel
    job_id = options["job_id"]
    adapter = configured_adapter()
    with storage(adapter, "cancel jobs"):
        done = cancel(job_id)
        found = status(job_id) if done != CANCELLED else None
    if done == CANCELLED:
        command.stdout.write(f"Job {job_id} is cancelled: it will not run.")
    elif done is not None:
        worker = f" on worker {found.worker_id}" if found is not None and found.worker_id else ""
        command.stdout.write(f"Job {job_id} is running{worker}: it was asked to stop. It ends cancelled when its run "
                             "stops for the request (self.cancelled, step.checkpoint()), retries or is interrupted; "
                             "a run that succeeds still succeeds.")
    elif not found.known:
        raise CommandError(unknown_job(adapter, job_id))
    else:
        raise CommandError(f"Job {job_id} is {found.state}: there is nothing to cancel (only jobs that have not "
                           "ended can be). Delete it with `manage.py jobs delete`.")


def run_delete(command: Any, options: dict) -> None:
    job_id = options["job_id"]
    adapter = configured_adapter()
    with storage(adapter, "delete jobs"):
        found = status(job_id)
        deleted = adapter.delete([job_id]) if found.state not in ("running", "unknown", "finished") else 0
        if not deleted:
            found = status(job_id)
    if deleted:
        command.stdout.write(f"Deleted job {job_id} ({found.state}, {found.job_class or 'undecodable payload'}).")
    elif found.state == "running":
        raise CommandError(f"Job {job_id} is running: a running job cannot be deleted. Cancel it "
                           f"(`manage.py jobs cancel {job_id}`), or wait for it to end.")
    elif not found.known:
        raise CommandError(unknown_job(adapter, job_id))
    elif found.state == "finished":
        raise CommandError(f"Job {job_id} finished already: nothing to delete (finished jobs are pruned "
                           "FINISHED_RETENTION_SECONDS after they end).")
    else:
        raise CommandError(f"Job {job_id} is {found.state} and was not deleted (it changed state meanwhile); "
                           "run the command again.")
