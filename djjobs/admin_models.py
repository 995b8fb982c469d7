"""The one model the admin pages hang on: no table (``managed = False``), it
exists to put "Jobs › Dashboard" on the admin index and to carry the
permissions the pages check (``djjobs.view_dashboard`` to look,
``djjobs.change_dashboard`` to act). Imported by ``djjobs.models``."""
from django.db import models


class Dashboard(models.Model):
    class Meta:
        managed = False
        app_label = "djjobs"
        verbose_name = "dashboard"
        verbose_name_plural = "dashboard"
        default_permissions = ("view", "change")
