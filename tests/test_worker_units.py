"""Worker pieces that need no process: queue order, argument parsing."""
import collections
import random

import pytest

from djjobs.worker.queues import QueueOrder, parse


def test_strict_order_without_weights():
    order = QueueOrder(parse(["critical", "default", "low"]))
    assert [order.next() for _ in range(3)] == [["critical", "default", "low"]] * 3


def test_weighted_order_follows_the_weights_and_starves_none():
    order = QueueOrder(parse(["critical,6", "default,3", "low,1"]), rng=random.Random(3))
    firsts = collections.Counter(order.next()[0] for _ in range(10_000))
    assert firsts["critical"] / firsts["default"] == pytest.approx(2, rel=0.15)
    assert firsts["default"] / firsts["low"] == pytest.approx(3, rel=0.25)
    assert all(sorted(order.next()) == ["critical", "default", "low"] for _ in range(100))


@pytest.mark.parametrize("specs, message", [
    (["bad queue"], "Malformed queue name"),
    (["q,0"], "whole number >= 1"),
    (["q,x"], "whole number >= 1"),
    ([], "At least one queue"),
])
def test_bad_queue_specs(specs, message):
    with pytest.raises(ValueError, match=message):
        parse(specs)
