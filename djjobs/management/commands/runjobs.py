"""``manage.py runjobs``: run jobs from the configured durable adapter."""
from __future__ import annotations

import argparse
import math
import os
import socket

from django.core.management.base import BaseCommand, CommandError

import djjobs
from djjobs import conf
from djjobs.adapters import get_adapter
from djjobs.errors import ConfigurationError
from djjobs.worker import logs, queues as queue_spec
from djjobs.worker.claimlog import ClaimLog
from djjobs.worker.process import WorkerProcess
from djjobs.worker.supervisor import Supervisor, child_argv


class Command(BaseCommand):
    help = ("Run background jobs. A supervisor starts --processes worker processes with --concurrency "
            "threads each, renews their leases and restarts any that dies. SIGTERM/SIGINT: finish running "
            "jobs (up to --shutdown-timeout s), hand back the rest, exit 0. SIGTSTP: stop fetching. "
            "A second SIGINT: stop now.")

    def add_arguments(self, parser):
        parser.add_argument("-q", "--queue", action="append", metavar="NAME[,WEIGHT]",
                            help="Queue to work (repeatable). Without weights: strict order, first queue first; "
                                 "with weights: weighted random. Default: DJJOBS['QUEUES'].")
        parser.add_argument("-c", "--concurrency", type=int, default=None,
                            help="Threads per process (default DJJOBS['CONCURRENCY'], 10).")
        parser.add_argument("--async-concurrency", type=int, default=None,
                            help="Async jobs (async def perform) each process runs at once on its event loop, "
                                 "beside its threads (default DJJOBS['ASYNC_CONCURRENCY'], 100).")
        parser.add_argument("-p", "--processes", type=int, default=1, help="Worker processes (default 1).")
        parser.add_argument("--shutdown-timeout", type=float, default=None,
                            help="Seconds running jobs get to finish on SIGTERM (default 25).")
        parser.add_argument("--cron", action="store_true",
                            help="Also run the cron scheduler (DJJOBS['CRON']) in this process, like jobs_cron.")
        # Internal: how the supervisor starts its worker processes (supervisor.child_argv); not for users,
        # so kept out of --help.
        parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
        parser.add_argument("--pipe-fd", type=int, default=None, help=argparse.SUPPRESS)
        parser.add_argument("--start-quiet", action="store_true", help=argparse.SUPPRESS)
        parser.add_argument("--claims-fd", type=int, default=None, help=argparse.SUPPRESS)

    def handle(self, *args, **options):
        logs.configure(options["verbosity"])
        options["queue"] = options["queue"] or list(conf.get("QUEUES"))
        if options["concurrency"] is None:
            options["concurrency"] = conf.get("CONCURRENCY")
        if options["async_concurrency"] is None:
            options["async_concurrency"] = conf.get("ASYNC_CONCURRENCY")
        if options["shutdown_timeout"] is None:
            options["shutdown_timeout"] = conf.get("SHUTDOWN_TIMEOUT")
        if not math.isfinite(options["shutdown_timeout"]) or options["shutdown_timeout"] < 0:
            raise CommandError(f"--shutdown-timeout must be a number of seconds >= 0, not {options['shutdown_timeout']}.")
        try:
            order = queue_spec.QueueOrder(queue_spec.parse(options["queue"]))
            adapter = get_adapter()
        except (ValueError, ConfigurationError) as exc:
            raise CommandError(str(exc)) from exc
        if options["concurrency"] < 1 or options["processes"] < 1 or options["async_concurrency"] < 1:
            raise CommandError("--concurrency, --async-concurrency and --processes must be at least 1.")
        if not adapter.supports_fetch or not adapter.durable:
            raise CommandError(f"runjobs needs a durable adapter (redis or database); DJJOBS['ADAPTER'] is "
                               f"{adapter.name!r}, which runs jobs inside the enqueuing process.")
        if options["child"]:
            return self._child(order, options, adapter)
        self._banner(adapter, options)
        supervisor = Supervisor(adapter, child_argv(options), processes=options["processes"],
                                queues=order.names, concurrency=options["concurrency"],
                                async_concurrency=options["async_concurrency"],
                                shutdown_timeout=options["shutdown_timeout"])
        supervisor.install_signals()
        stop_cron = self._start_cron() if options["cron"] else None
        try:
            supervisor.run()
        finally:
            if stop_cron is not None:
                stop_cron.set()

    def _start_cron(self):
        import threading
        from djjobs.cron import Scheduler, entries
        try:
            scheduler = Scheduler(cron_entries=entries())
        except ConfigurationError as exc:
            raise CommandError(str(exc)) from exc
        stop = threading.Event()
        threading.Thread(target=scheduler.run, args=(stop,), name="djjobs-cron", daemon=True).start()
        return stop

    def _child(self, order, options, adapter):
        pipe = os.fdopen(options["pipe_fd"], "wb", buffering=0) if options["pipe_fd"] is not None else None
        slots = options["concurrency"] + options["async_concurrency"]  # one per thread, one per async slot
        claim_log = ClaimLog(options["claims_fd"], slots) if options["claims_fd"] is not None else None
        worker = WorkerProcess(order, options["concurrency"], shutdown_timeout=options["shutdown_timeout"],
                               poll_interval=float(conf.get("POLL_INTERVAL")), pipe=pipe, adapter=adapter,
                               prefetch_seconds=float(conf.get("PREFETCH_SECONDS")), claim_log=claim_log,
                               async_concurrency=options["async_concurrency"],
                               async_lag_warning=float(conf.get("ASYNC_LAG_WARNING")))
        worker.install_signals()
        if options["start_quiet"]:  # restarted after the supervisor was told SIGTSTP
            worker.go_quiet()
        worker.run()

    def _banner(self, adapter, options):
        if options["verbosity"] < 1:
            return
        self.stdout.write(
            f"djjobs {djjobs.__version__} runjobs on {socket.gethostname()} pid {os.getpid()}: "
            f"adapter {adapter.name}, queues {', '.join(options['queue'])}, "
            f"{options['processes']} process(es) x {options['concurrency']} threads "
            f"(+ {options['async_concurrency']} async slots), "
            f"shutdown timeout {options['shutdown_timeout']:.0f} s")
