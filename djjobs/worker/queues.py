"""Which queues a worker fetches from, in what order.

``-q critical -q default``: strict order, the first queue always first.
``-q critical,6 -q default,3 -q low,1``: weighted random order per fetch,
like Sidekiq: a queue with weight 6 comes first twice as often as one with 3,
and no queue starves.
"""
from __future__ import annotations

import random
import re

from .. import conf


def parse(specs: list[str]) -> list[tuple[str, int]]:
    """``["name", "name,weight", ...]`` -> [(name, weight)]; raises ValueError with the rule broken."""
    result = []
    for spec in specs:
        name, comma, weight = spec.partition(",")
        conf.check_queue_name(name.strip())
        if comma and (not re.fullmatch(r"[0-9]+", weight.strip()) or int(weight) < 1):
            raise ValueError(f"Queue weight in {spec!r} must be a whole number >= 1 (or leave out the comma).")
        result.append((name.strip(), int(weight) if comma else 0))
    if not result:
        raise ValueError("At least one queue is needed.")
    return result


class QueueOrder:
    def __init__(self, queues: list[tuple[str, int]], rng: random.Random | None = None):
        self.names = [name for name, _ in queues]
        self.weighted = any(weight for _, weight in queues)
        self.weights = [max(weight, 1) for _, weight in queues]
        self.rng = rng or random.Random()

    def next(self) -> list[str]:
        if not self.weighted:
            return self.names
        remaining, weights, order = list(self.names), list(self.weights), []
        while remaining:
            i = self.rng.choices(range(len(remaining)), weights)[0]
            order.append(remaining.pop(i))
            weights.pop(i)
        return order
