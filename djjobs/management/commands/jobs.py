"""``manage.py jobs <subcommand>``: inspect and manage jobs (docs/cli.md; code in djjobs/cli/)."""
from __future__ import annotations

from django.core.management.base import BaseCommand

from djjobs import cli


class Command(BaseCommand):
    help = ("Inspect and manage jobs: status [JOB_ID], show, enqueue, retry, cancel, delete, purge, pause, resume, "
            "workers, batch. `manage.py jobs SUBCOMMAND --help` for each.")

    def add_arguments(self, parser):
        cli.add_arguments(parser)

    def handle(self, *args, **options):
        cli.run(self, options)
