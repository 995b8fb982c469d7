"""Settings for worker processes the tests start: the test settings plus the
adapter configuration the test passes in the environment (JSON)."""
import json
import os

from tests.settings import *  # noqa: F401,F403

DJJOBS = {**DJJOBS, **json.loads(os.environ.get("DJJOBS_TEST_DJJOBS", "{}"))}  # noqa: F405
if os.environ.get("DJJOBS_TEST_DATABASES"):
    DATABASES = json.loads(os.environ["DJJOBS_TEST_DATABASES"])
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "formatters": {"plain": {"format": "%(asctime)s %(process)d %(levelname)s %(message)s"}},
    "loggers": {"djjobs": {"handlers": ["stderr"], "level": "INFO"}},
}
if os.environ.get("DJJOBS_TEST_MAIL_DIR"):  # let tests count the emails a worker sends
    MAILERS = {"default": {"BACKEND": "django.core.mail.backends.filebased.EmailBackend",
                           "OPTIONS": {"file_path": os.environ["DJJOBS_TEST_MAIL_DIR"]}}}
DEMO_EMAIL_PAUSE = float(os.environ.get("DEMO_EMAIL_PAUSE", "0"))
