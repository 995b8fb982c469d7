"""``manage.py jobs_cron``: the cron scheduler loop (or ``--list`` the schedule)."""
from __future__ import annotations

import os
import signal
import threading

from django.core.management.base import BaseCommand, CommandError

from djjobs.cron import Scheduler, entries
from djjobs.errors import ConfigurationError
from djjobs.worker import logs


class Command(BaseCommand):
    help = ("Enqueue DJJOBS['CRON'] entries on schedule. Any number may run at once: each tick is "
            "enqueued exactly once. SIGTERM/SIGINT stop it.")

    def add_arguments(self, parser):
        parser.add_argument("--list", action="store_true", help="Print each entry and its next three runs, then exit.")

    def handle(self, *args, **options):
        logs.configure(options["verbosity"])
        try:
            schedule = entries()
        except ConfigurationError as exc:
            raise CommandError(str(exc)) from exc
        if options["list"]:
            return self._list(schedule)
        if not schedule:
            raise CommandError("DJJOBS['CRON'] is empty: nothing to schedule.")
        stop = threading.Event()

        def on_signal(*_):
            if stop.is_set():
                os._exit(1)  # a second signal: now
            stop.set()
            # A pass blocked on the database or Redis must not keep the process alive forever.
            deadline = threading.Timer(10, lambda: os._exit(0))
            deadline.daemon = True
            deadline.start()

        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, on_signal)
        if options["verbosity"]:
            self.stdout.write(f"jobs_cron: {len(schedule)} entr{'y' if len(schedule) == 1 else 'ies'}: "
                              + ", ".join(e.name for e in schedule))
        Scheduler(cron_entries=schedule).run(stop)

    def _list(self, schedule):
        if not schedule:
            self.stdout.write("DJJOBS['CRON'] is empty.")
        for entry in schedule:
            runs = ", ".join(dt.isoformat() for dt in entry.next_runs(3))
            self.stdout.write(f"{entry.name}: '{entry.cron}' {entry.timezone} -> {entry.job} "
                              f"(queue {entry.queue or 'job default'}); next: {runs}")
