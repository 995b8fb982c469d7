"""The demo store's jobs (autodiscovered by djjobs)."""
import logging

from djjobs import Job

logger = logging.getLogger(__name__)


class HelloJob(Job):
    """Logs a greeting: the smallest job there is (the demo's home page enqueues it)."""

    def perform(self, name: str) -> str:
        logger.info("Hello, %s!", name)
        return f"Hello, {name}!"
