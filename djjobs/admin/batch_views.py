"""The admin's batch pages (docs/admin.md#batches): the Batches list, a batch's own page,
(what the job page and the dashboard show of batches: batch_presenters.py). Read-only: a batch is changed
through its jobs (retry, cancel, delete them on their pages), whose ends settle it.

Everything is read through the adapter's inspection methods (``batches``,
``batch_status``, ``batch_failures``), so the pages are the same on every adapter; views
here go through :func:`views.guarded` like every other page (see ``admin/__init__.py``)."""
from __future__ import annotations

from django.contrib import messages
from django.http import Http404

from ..adapters import get_adapter
from . import batch_presenters, inputs, presenters
from .inputs import InvalidInput
from .views import PER_PAGE, checked, render, require_view

#: Failed jobs listed on a batch's page (each is one read of the job).
FAILURES_SHOWN = 100


def batches(request, site):
    require_view(request)
    page_no = checked(request, inputs.page_number, request.GET.get("page"), default=1)
    page = get_adapter().batches(page=page_no, per_page=PER_PAGE)
    pages = max(1, -(-page.total // PER_PAGE))
    if page_no > pages:
        messages.warning(request, f"There is no page {page_no:,}: this list has {pages:,}.")
    return render(request, site, "batches.html", "Batches", "batches", page=page, pages=pages,
                  rows=[batch_presenters.batch(s) for s in page.items])


def batch_detail(request, site):
    """``batch/?id=<batch id>`` (a query string, as for jobs: any id survives it)."""
    require_view(request)
    batch_id = request.GET.get("id", "")
    if not batch_id:
        raise InvalidInput("No batch id given: open a batch from the Batches page.")
    if len(batch_id) > batch_presenters.MAX_BATCH_ID:
        raise InvalidInput(f"A batch id is at most {batch_presenters.MAX_BATCH_ID} characters; this one has "
                           f"{len(batch_id):,}. Open a batch from the Batches page.")
    adapter = get_adapter()
    status = adapter.batch_status(batch_id)
    if status is None:
        raise Http404("No such batch (never opened, or pruned BATCH_RETENTION_SECONDS after completing).")
    figures = batch_presenters.batch(status)
    callbacks = []
    for event, job_id in batch_presenters.callbacks(status):
        record = adapter.get(job_id)
        callbacks.append({"event": event, "job_id": job_id, "state": record.state if record else None,
                          "fired": batch_presenters.fired(figures, event)})
    failed_ids = adapter.batch_failures(batch_id, FAILURES_SHOWN + 1)
    failures = [presenters.row(r) for r in map(adapter.get, failed_ids[:FAILURES_SHOWN]) if r is not None]
    return render(request, site, "batch.html", f"Batch {inputs.short(figures['label'])}", "batches", b=figures,
                  properties=batch_presenters.properties(status), callbacks=callbacks, failures=failures,
                  failures_truncated=len(failed_ids) > FAILURES_SHOWN)
