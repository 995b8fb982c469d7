from django.apps import AppConfig


class TestsConfig(AppConfig):
    name = "tests"
    label = "tests"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from . import async_worker_jobs, worker_jobs  # noqa: F401  (jobs the worker processes in tests run)
