"""Settings for the test-suite: the demo project's apps plus a test app with models."""
import os

from demo_store.settings import *  # noqa: F401,F403

INSTALLED_APPS = [*INSTALLED_APPS, "tests"]  # noqa: F405
import json  # noqa: E402
import tempfile  # noqa: E402

# SQLite in a real file (WAL), so worker processes the tests start share it.
SQLITE_FILE = os.environ.get("DJJOBS_TEST_SQLITE") or os.path.join(tempfile.gettempdir(), f"djjobs-test-{os.getpid()}.sqlite3")
os.environ.setdefault("DJJOBS_TEST_SQLITE", SQLITE_FILE)
DATABASES = {"default": {
    "ENGINE": "django.db.backends.sqlite3", "NAME": SQLITE_FILE, "TEST": {"NAME": SQLITE_FILE},
    "OPTIONS": {"transaction_mode": "IMMEDIATE", "timeout": 30,
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"},
}}
if os.environ.get("DJJOBS_TEST_PG"):  # started by tests/pg_plugin.py
    DATABASES["postgres"] = json.loads(os.environ["DJJOBS_TEST_PG"])
DJJOBS = {"ADAPTER": "test", "QUEUES": ["default", "mailers", "low"]}
MAILERS = {"default": {"BACKEND": "django.core.mail.backends.locmem.EmailBackend"}}
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
LOGGING = {"version": 1, "disable_existing_loggers": False}
TASKS = {"default": {"BACKEND": "djjobs.tasks.JobsBackend", "QUEUES": ["default", "mailers", "low"]}}
