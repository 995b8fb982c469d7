import pytest

from .adapters import CONFORMANCE_ADAPTERS


@pytest.fixture(params=CONFORMANCE_ADAPTERS)
def adapter(request, clock):
    """Each conformance adapter, empty, with the fake clock installed."""
    instance = request.getfixturevalue(request.param.replace("-", "_") + "_adapter")
    instance.clock = clock
    return instance
