"""Read-only subcommands: ``status [JOB_ID]`` (the whole storage at a glance, or one job),
``workers`` and ``batch BATCH_ID``. ``manage.py jobs_status`` is ``jobs status``."""
from __future__ import annotations

import dataclasses
import time
from datetime import datetime, timezone
from typing import Any

from django.core.management.base import CommandError

from ..job_status import JobStatus, status
from .common import add_json, adapter as configured_adapter, storage, unknown_job, when, write_json


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("status", help="Queues, counts and workers at a glance; or where one job is.",
                              description="Without JOB_ID: queue sizes and latency, scheduled/retry/dead counts "
                                          "and live workers (what `jobs_status` shows). With JOB_ID: where that "
                                          "job is (ready, scheduled, retry, running and on which worker, blocked, "
                                          "waiting, dead, cancelled, finished, or unknown: exit status 1).")
    p.add_argument("job_id", nargs="?", metavar="JOB_ID", help="A job id (perform_later(...).job_id).")
    add_json(p)
    p.set_defaults(run=run_status)
    p = subparsers.add_parser("workers", help="Live workers, their queues and the jobs they run.",
                              description="Workers with a heartbeat in the last two leases: host, pid, queues, "
                                          "busy threads and the jobs they run.")
    add_json(p)
    p.set_defaults(run=run_workers)
    p = subparsers.add_parser("batch", help="A batch's counts and callbacks (djjobs.Batch.status).",
                              description="A batch's counts (total, pending, succeeded, dead, discarded, "
                                          "cancelled), whether it is closed and complete, and its callbacks.")
    p.add_argument("batch_id", metavar="BATCH_ID", help="A batch id (batch.id).")
    add_json(p)
    p.set_defaults(run=run_batch)


def run_status(command: Any, options: dict) -> None:
    if options.get("job_id") is not None:
        return run_job_status(command, options["job_id"], options.get("json", False))
    adapter = configured_adapter()
    with storage(adapter, "show the state of its jobs"):
        counts, queues, workers = adapter.counts(), adapter.queues(), adapter.workers()
    if options.get("json"):
        return write_json(command, {"adapter": adapter.name, "counts": dataclasses.asdict(counts),
                                    "queues": [dataclasses.asdict(q) for q in queues],
                                    "workers": [_worker_dict(w) for w in workers]})
    w = command.stdout.write
    w(f"Adapter: {adapter.name}")
    w(f"Processed: {counts.processed:,} ({counts.processed_today:,} today)   "
      f"Failed: {counts.failed:,} ({counts.failed_today:,} today)")
    w(f"Enqueued: {counts.enqueued:,}   Scheduled: {counts.scheduled:,}   Retry: {counts.retry:,}   "
      f"Dead: {counts.dead:,}   Busy: {counts.busy:,}   Blocked: {counts.blocked:,}   "
      f"Waiting: {counts.waiting:,}   Cancelled: {counts.cancelled:,}")
    w("")
    w(f"{'QUEUE':<24}{'SIZE':>10}{'LATENCY':>12}  PAUSED")
    for q in queues:
        w(f"{q.name:<24}{q.size:>10,}{q.latency:>11.1f}s  {'yes' if q.paused else ''}")
    w("")
    _worker_table(command, workers)


def run_job_status(command: Any, job_id: str, as_json: bool) -> None:
    adapter = configured_adapter()
    with storage(adapter, "look up jobs"):
        found = status(job_id)
    if as_json:
        write_json(command, found.as_dict())
    else:
        for line in describe(found):
            command.stdout.write(line)
    if not found.known:
        raise CommandError(unknown_job(adapter, job_id))


def describe(found: JobStatus) -> list[str]:
    """A job's status as lines of text (``jobs status JOB_ID``, the head of ``jobs show``)."""
    lines = [f"Job {found.job_id}: {found.state}"]
    if not found.known:
        return lines
    lines.append(f"Class: {found.job_class or '(payload does not decode)'}   Queue: {found.queue}   "
                 f"Priority: {found.priority}   Attempts: {found.attempts}")
    lines.append(f"Enqueued: {when(found.enqueued_at)}")
    if found.run_at is not None:
        lines.append(f"Runs at: {when(found.run_at)}")
    if found.state == "running":
        lines.append(f"Worker: {found.worker_id or '(not reported yet)'}"
                     + (f"   Started: {when(found.started_at)}" if found.started_at else ""))
    if found.ended_at is not None:
        lines.append(f"Ended: {when(found.ended_at)}")
    if found.error:
        lines.append(f"Error: {found.error.get('class', '')}: {found.error.get('message', '')}")
    return lines


def run_workers(command: Any, options: dict) -> None:
    adapter = configured_adapter()
    with storage(adapter, "list workers"):
        workers = adapter.workers()
    if options.get("json"):
        return write_json(command, [_worker_dict(w) for w in workers])
    _worker_table(command, workers, jobs=True)


def _worker_table(command: Any, workers: list, jobs: bool = False) -> None:
    w, now = command.stdout.write, time.time()
    w(f"{'WORKER':<40}{'PID':>8}{'BUSY':>6}  QUEUES")
    for worker in workers:
        w(f"{worker.worker_id:<40}{worker.pid:>8}{len(worker.busy):>3}/{worker.concurrency:<3} "
          f"{','.join(worker.queues)}  (up {now - worker.started_at:.0f} s)")
        for entry in worker.busy if jobs else ():
            started = entry.get("started_at") if isinstance(entry, dict) else None
            ran = f"{now - started:.0f} s" if isinstance(started, (int, float)) else "?"
            w(f"    {entry.get('job_id', '?')}  {entry.get('job', '?')}  queue {entry.get('queue', '?')}  "
              f"running {ran}")
    if not workers:
        w("(no live workers)")


def _worker_dict(worker: Any) -> dict:
    data = dataclasses.asdict(worker)
    for key in ("started_at", "heartbeat_at"):
        data[key] = _iso(data.get(key))
    data["busy"] = [{**entry, "started_at": _iso(entry.get("started_at"))} if isinstance(entry, dict) else entry
                    for entry in data.get("busy") or []]
    return data


def _iso(ts: Any) -> Any:
    return datetime.fromtimestamp(ts, timezone.utc).isoformat() if isinstance(ts, (int, float)) and ts else ts


def run_batch(command: Any, options: dict) -> None:
    from ..batches import Batch
    adapter = configured_adapter()
    try:
        with storage(adapter, "keep batches"):
            found = Batch.status(options["batch_id"])
            failures = adapter.batch_failures(found.id) if found is not None else []
    except TypeError as exc:
        raise CommandError(str(exc)) from None
    if found is None:
        raise CommandError(f"No batch {options['batch_id']!r} in the {adapter.name} adapter's storage: it was never "
                           "opened, or it completed more than BATCH_RETENTION_SECONDS ago and was pruned. Check the "
                           "id (batch.id; the admin's Batches page lists them).")
    if options.get("json"):
        data = found.to_dict()
        data.update(created_at=_iso(found.created_ts), completed_at=_iso(found.completed_ts), failed=found.failed,
                    complete=found.complete, success=found.success, failures=failures)
        return write_json(command, data)
    state = "complete" + (" (success)" if found.success else "") if found.complete else (
        "closed" if found.closed else "open")
    w = command.stdout.write
    w(f"Batch {found.id}: {state}" + (f"   {found.description}" if found.description else ""))
    w(f"Total: {found.total:,}   Pending: {found.pending:,}   Succeeded: {found.succeeded:,}   Dead: {found.dead:,}"
      f"   Discarded: {found.discarded:,}   Cancelled: {found.cancelled:,}")
    w(f"Created: {when(found.created_at)}   Completed: {when(found.completed_at)}")
    for event, job_id in sorted(found.callbacks.items()):
        w(f"Callback on_{event}: job {job_id}")
    if failures:
        w(f"Failed jobs (dead or cancelled, newest first): {', '.join(failures)}")

