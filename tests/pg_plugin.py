"""Loaded with ``-p tests.pg_plugin`` (pyproject addopts) so it runs before
pytest-django reads the settings: starts the test PostgreSQL server and hands
its address to tests/settings.py. Without the binaries the postgres tests skip,
except under CI=true, where that is an error."""
import json
import os

import pytest

_server = None


@pytest.hookimpl(tryfirst=True)
def pytest_load_initial_conftests(early_config, parser, args):
    global _server
    if os.environ.get("DJJOBS_TEST_PG") or os.environ.get("DJJOBS_TEST_NO_PG"):
        return
    from tests.pg_server import PostgresServer
    try:
        _server = PostgresServer().start()
    except FileNotFoundError as exc:
        if os.environ.get("CI") == "true":
            raise pytest.UsageError(f"CI: {exc}") from None
        os.environ["DJJOBS_TEST_PG_MISSING"] = str(exc)
        return
    os.environ["DJJOBS_TEST_PG"] = json.dumps(_server.settings())


def pytest_unconfigure(config):
    if _server is not None:
        _server.cleanup()


def server():
    """The running server (for restart tests), or None."""
    return _server
