"""The job pages inside the Django admin (a Sidekiq Web UI): registered under
"Jobs › Dashboard" on the admin index. See docs/admin.md."""
from functools import partial, update_wrapper

from django.contrib import admin
from django.urls import path, register_converter

from ..admin_models import Dashboard
from . import batch_views, views


class AnyText:
    """A path segment or several, with any character (a job id may hold a newline,
    which ``<path:…>`` refuses, so its URL could not even be built)."""
    regex = r"[\s\S]+"

    def to_python(self, value: str) -> str:
        return value

    def to_url(self, value: str) -> str:
        return value


register_converter(AnyText, "djjobs_any")


@admin.register(Dashboard)
class DashboardAdmin(admin.ModelAdmin):
    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def changelist_view(self, request, extra_context=None):
        return views.guarded(views.dashboard)(request, site=self.admin_site)

    def get_urls(self):
        def page(view, name, route):
            bound = update_wrapper(partial(views.guarded(view), site=self.admin_site), view)
            return path(route, self.admin_site.admin_view(bound), name=name)
        return [
            page(views.dashboard, "djjobs_dashboard_changelist", ""),
            page(views.stats, "djjobs_stats", "stats.json"),
            page(views.queues, "djjobs_queues", "queues/"),
            page(views.queue_action, "djjobs_queue_action", "queues/action/"),
            page(views.workers, "djjobs_workers", "workers/"),
            page(views.cron, "djjobs_cron", "cron/"),
            page(views.cron_run_now, "djjobs_cron_run", "cron/run/"),
            page(views.limits, "djjobs_limits", "limits/"),
            page(views.limits_action, "djjobs_limits_action", "limits/action/"),
            page(batch_views.batches, "djjobs_batches", "batches/"),
            page(batch_views.batch_detail, "djjobs_batch", "batch/"),
            page(views.job_detail, "djjobs_job_detail", "job/"),
            page(views.job_detail, "djjobs_job", "job/<djjobs_any:job_id>/"),
            page(views.jobs_action, "djjobs_jobs_action", "<str:state>/action/"),
            page(views.jobs, "djjobs_jobs", "<str:state>/"),
        ]
