from django.apps import AppConfig
from django.utils.module_loading import autodiscover_modules


class DjJobsConfig(AppConfig):
    name = "djjobs"
    verbose_name = "Jobs"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from . import checks  # noqa: F401  (registers the system checks)
        # Job classes register when defined: import every installed app's jobs.py.
        autodiscover_modules("jobs")
