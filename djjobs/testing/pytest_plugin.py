"""pytest fixtures, registered through the ``pytest11`` entry point."""
from __future__ import annotations

from typing import Iterator

import pytest

from . import TestAdapter, use_test_adapter


@pytest.fixture
def enqueued_jobs() -> Iterator[TestAdapter]:
    """A fresh test adapter for the test; ``enqueued_jobs.enqueued`` lists envelopes in order."""
    with use_test_adapter() as adapter:
        yield adapter
