"""``manage.py jobs_status``: queues, sets and workers at a glance (``jobs status``, kept
under its old name)."""
from __future__ import annotations

from django.core.management.base import BaseCommand

from djjobs.cli import overview


class Command(BaseCommand):
    help = "Show queue sizes and latency, scheduled/retry/dead counts and live workers (same as `jobs status`)."

    def add_arguments(self, parser):
        parser.add_argument("job_id", nargs="?", metavar="JOB_ID", help="Where one job is, as `jobs status JOB_ID`.")
        parser.add_argument("--json", action="store_true", help="Print JSON instead of a table.")

    def handle(self, *args, **options):
        overview.run_status(self, options)
