"""Settings for the test-suite: the demo project's apps plus a test app with models."""
import os

from demo_store.settings import *  # noqa: F401,F403

INSTALLED_APPS = [*INSTALLED_APPS, "tests"]  # noqa: F405
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": os.environ.get("TEST_SQLITE", ":memory:"),
                         "TEST": {"NAME": os.environ.get("TEST_SQLITE")} if os.environ.get("TEST_SQLITE") else {}}}
DJJOBS = {"ADAPTER": "test", "QUEUES": ["default", "mailers", "low"]}
MAILERS = {"default": {"BACKEND": "django.core.mail.backends.locmem.EmailBackend"}}
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
LOGGING = {"version": 1, "disable_existing_loggers": False}
TASKS = {"default": {"BACKEND": "djjobs.tasks.JobsBackend", "QUEUES": ["default", "mailers", "low"]}}
