import pytest

pytest_plugins = ["tests.fixtures.core", "tests.fixtures.redis", "tests.fixtures.database", "tests.fixtures.worker"]


@pytest.fixture(autouse=True)
def _clear_calls():
    from tests.jobs import CALLS
    CALLS.clear()
    yield
