"""``manage.py jobs <subcommand>``: the day-to-day command line (docs/cli.md).

One module per group of subcommands (``overview``: status, workers, batch; ``show``;
``actions``: enqueue, retry, cancel, delete; ``queues``: purge, pause, resume); each
registers its subparsers with a ``run(command, options)`` that writes to
``command.stdout`` and raises ``CommandError`` (exit status 1) naming what is wrong and
what to do. The management command only builds the parser and dispatches.
"""
from __future__ import annotations

from typing import Any

from . import actions, overview, queues, show

GROUPS = (overview, show, actions, queues)


def add_arguments(parser: Any) -> None:
    subparsers = parser.add_subparsers(dest="subcommand", metavar="SUBCOMMAND", required=True,
                                       title="subcommands (each has --help)")
    for group in GROUPS:
        group.register(subparsers)


def run(command: Any, options: dict) -> None:
    options["run"](command, options)
