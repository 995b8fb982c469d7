"""``manage.py jobs_status``: queues, sets and workers at a glance."""
from __future__ import annotations

import time

from django.core.management.base import BaseCommand, CommandError

from djjobs.adapters import get_adapter
from djjobs.storage_errors import UNAVAILABLE, unavailable_message


class Command(BaseCommand):
    help = "Show queue sizes and latency, scheduled/retry/dead counts and live workers."

    def handle(self, *args, **options):
        adapter = get_adapter()
        try:
            counts, queues, workers = adapter.counts(), adapter.queues(), adapter.workers()
        except NotImplementedError:
            raise CommandError(f"The {adapter.name} adapter keeps no state to show.") from None
        except UNAVAILABLE as exc:  # Redis or the database is down: say which, and what to do
            raise CommandError(unavailable_message(adapter, exc)) from exc
        except Exception as exc:
            raise CommandError(f"Cannot read the {adapter.name} adapter: {type(exc).__name__}: {exc}") from exc
        w = self.stdout.write
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
        w(f"{'WORKER':<40}{'PID':>8}{'BUSY':>6}  QUEUES")
        now = time.time()
        for worker in workers:
            w(f"{worker.worker_id:<40}{worker.pid:>8}{len(worker.busy):>3}/{worker.concurrency:<3} "
              f"{','.join(worker.queues)}  (up {now - worker.started_at:.0f} s)")
        if not workers:
            w("(no live workers)")
