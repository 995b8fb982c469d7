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
        from importlib import import_module
        from django.core.exceptions import ImproperlyConfigured
        from . import conf
        modules = conf.get("JOB_MODULES")
        for module in modules if isinstance(modules, (list, tuple)) else []:  # else: system check E002
            if not isinstance(module, str):
                continue  # reported by the system checks (E002)
            try:  # settings are trusted; payloads never name modules
                import_module(module)
            except ImportError as exc:
                raise ImproperlyConfigured(f"DJJOBS['JOB_MODULES'] names {module!r}, which cannot be imported "
                                           f"({exc}).") from exc
        if uses_djjobs_tasks():
            from . import tasks  # noqa: F401  (its job_failed receiver marks unstartable tasks FAILED)
            autodiscover_modules("tasks")  # @task functions register their Job classes
        # Import the configured adapter's module now (it connects only when first used), so a
        # process's first enqueue does not pay for importing redis-py (about 90 ms). A bad
        # setting is reported by the system checks, not here.
        from .adapters import adapter_class
        try:
            adapter_class(conf.get("ADAPTER"))
        except Exception:
            pass


def uses_djjobs_tasks() -> bool:
    from django.conf import settings
    backends = getattr(settings, "TASKS", None) or {}
    return any(str(b.get("BACKEND", "")).startswith("djjobs.") for b in backends.values())
