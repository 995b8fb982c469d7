"""The job pages inside the Django admin. Everything is read and changed through
the adapter contract, so the pages work the same on every adapter."""
from __future__ import annotations

import time

from django.contrib import messages
from django.contrib.admin.models import CHANGE, LogEntry
from django.contrib.contenttypes.models import ContentType
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpResponseRedirect, JsonResponse
from django.template.response import TemplateResponse
from django.urls import reverse
from django.views.decorators.http import require_POST

from .. import registry
from ..adapters import get_adapter
from ..admin_models import Dashboard
from . import presenters
from .charts import history_svg

STATES = {"scheduled": "Scheduled", "retry": "Retries", "dead": "Dead"}
PER_PAGE = 25
ACTIONS = {"scheduled": ("retry_now", "delete"), "retry": ("retry_now", "kill", "delete"),
           "dead": ("retry_now", "delete", "retry_all")}
LABELS = {"retry_now": "Retry now", "delete": "Delete", "kill": "Kill (move to dead)", "retry_all": "Retry all"}


def labelled(actions) -> list[tuple[str, str]]:
    return [(action, LABELS[action]) for action in actions]


def can_view(request) -> bool:
    return request.user.has_perm("djjobs.view_dashboard") or request.user.has_perm("djjobs.change_dashboard")


def require_view(request) -> None:
    if not can_view(request):
        raise PermissionDenied


def require_change(request) -> None:
    if not request.user.has_perm("djjobs.change_dashboard"):
        raise PermissionDenied


def render(request, site, template: str, title: str, tab: str, **context):
    context = {**site.each_context(request), "title": title, "tab": tab, "opts": Dashboard._meta,
               "can_change": request.user.has_perm("djjobs.change_dashboard"), "adapter": get_adapter(),
               "states": STATES, **context}
    return TemplateResponse(request, f"djjobs/admin/{template}", context)


def log_action(request, message: str) -> None:
    LogEntry.objects.create(
        user_id=request.user.pk, content_type=ContentType.objects.get_for_model(Dashboard, for_concrete_model=False),
        object_id="", object_repr=message[:200], action_flag=CHANGE, change_message=message)


def back(request, fallback: str) -> HttpResponseRedirect:
    return HttpResponseRedirect(request.POST.get("next") or fallback)


# --- pages ------------------------------------------------------------------
def dashboard(request, site):
    require_view(request)
    adapter = get_adapter()
    history = adapter.history(30)
    return render(request, site, "dashboard.html", "Jobs", "dashboard", counts=adapter.counts(),
                  chart=history_svg(history), history=history, totals=_totals(history))


def stats(request, site):
    require_view(request)
    c = get_adapter().counts()
    return JsonResponse({k: getattr(c, k) for k in ("processed", "failed", "processed_today", "failed_today",
                                                    "enqueued", "scheduled", "retry", "dead", "busy")} | {"at": time.time()})


def queues(request, site):
    require_view(request)
    adapter = get_adapter()
    confirm = request.GET.get("confirm_clear")
    return render(request, site, "queues.html", "Queues", "queues", queues=adapter.queues(), confirm=confirm)


@require_POST
def queue_action(request, site):
    require_change(request)
    adapter, action, name = get_adapter(), request.POST.get("action"), request.POST.get("queue", "")
    if action == "pause":
        adapter.pause(name)
    elif action == "resume":
        adapter.resume(name)
    elif action == "clear" and request.POST.get("confirm") == "yes":
        n = adapter.clear(name)
        messages.success(request, f"Cleared {n:,} job(s) from {name}.")
    else:
        raise PermissionDenied("Unknown or unconfirmed queue action.")
    log_action(request, f"{action} queue {name}")
    return back(request, reverse("admin:djjobs_queues"))


def jobs(request, site, state: str):
    require_view(request)
    if state not in STATES:
        raise Http404
    page_no = _int(request.GET.get("page"), 1)
    job, queue, search = request.GET.get("job") or None, request.GET.get("queue") or None, request.GET.get("q") or None
    if search and not request.user.has_perm("djjobs.change_dashboard"):
        page = _by_id(state, search)  # a payload search would tell whether a masked argument holds a text
    else:
        page = get_adapter().jobs(state, queue=queue, job=job, search=search, page=page_no, per_page=PER_PAGE)
    pages = max(1, -(-page.total // PER_PAGE))
    return render(request, site, "jobs.html", STATES[state], state, state=state, page=page, pages=pages,
                  rows=[presenters.row(r) for r in page.items], job=job or "", queue=queue or "", q=search or "",
                  job_names=sorted(registry.registered()), actions=labelled(ACTIONS[state]),
                  queue_names=[q.name for q in get_adapter().queues()])


@require_POST
def jobs_action(request, site, state: str):
    require_change(request)
    if state not in STATES:
        raise Http404
    action, ids, adapter = request.POST.get("action"), request.POST.getlist("ids"), get_adapter()
    if action not in ACTIONS[state]:
        raise PermissionDenied("Unknown action.")
    if action == "retry_all":
        n = _retry_all(adapter)
    elif action == "retry_now":
        n = adapter.retry_now(ids)
    elif action == "kill":
        n = adapter.kill_now(ids)
    else:
        n = adapter.delete(ids)
    messages.success(request, f"{action.replace('_', ' ').capitalize()}: {n:,} job(s).")
    log_action(request, f"{action} {n} {state} job(s)" + (f": {', '.join(ids[:10])}" if ids else ""))
    return back(request, reverse("admin:djjobs_jobs", args=[state]))


def _by_id(state: str, job_id: str):
    from ..adapters.base import Page
    record = get_adapter().get(job_id)
    items = [record] if record is not None and record.state == state else []
    return Page(items, len(items), 1, PER_PAGE)


def _retry_all(adapter, batch: int = 500, limit: int = 1_000_000) -> int:
    """Each job dead at the click, once: the ids are read first, then moved. (Moving page
    one until the set was empty retried again jobs that a worker had meanwhile failed
    back into the dead set.)"""
    ids: dict[str, None] = {}
    page = 1
    while len(ids) < limit:
        found = [r.job_id for r in adapter.jobs("dead", page=page, per_page=batch).items]
        ids.update(dict.fromkeys(found))
        if len(found) < batch:
            break
        page += 1
    ordered = list(ids)
    return sum(adapter.retry_now(ordered[i:i + batch]) for i in range(0, len(ordered), batch))


def job_detail(request, site, job_id: str):
    require_view(request)
    record = get_adapter().get(job_id)
    if record is None:
        raise Http404("No such job (it may have finished).")
    return render(request, site, "job.html", f"Job {job_id}", record.state, job=presenters.detail(record),
                  actions=[a for a in labelled(ACTIONS.get(record.state, ())) if a[0] != "retry_all"])


def workers(request, site):
    require_view(request)
    now = time.time()
    rows = [{"w": w, "busy": [{**b, "running": now - (b.get("started_at") or now)} for b in w.busy],
             "uptime": now - w.started_at, "seen": now - w.heartbeat_at} for w in get_adapter().workers()]
    return render(request, site, "workers.html", "Workers", "workers", workers=rows)


def cron(request, site):
    require_view(request)
    from ..cron import parse_entries
    from .. import conf
    entries, problems = parse_entries(conf.get("CRON"))
    states = get_adapter().cron_states()
    rows = []
    for entry in entries:
        state = states.get(entry.name, {})
        rows.append({"entry": entry, "next": (entry.next_runs(1) or [None])[0],
                     "last_tick": presenters.when(state.get("last_tick")),
                     "last_enqueued": presenters.when(state.get("last_enqueued_at")),
                     "outcome": state.get("last_outcome", ""), "job_id": state.get("last_job_id")})
    return render(request, site, "cron.html", "Cron", "cron", rows=rows, problems=problems)


@require_POST
def cron_run_now(request, site):
    require_change(request)
    from ..cron import Scheduler, parse_entries
    from .. import conf
    name = request.POST.get("name", "")
    try:  # the valid entries: another one's problem (shown on the page) must not stop this one
        job = Scheduler(get_adapter(), parse_entries(conf.get("CRON"))[0]).run_now(name)
    except StopIteration:
        raise Http404(f"No cron entry {name!r}.") from None
    messages.success(request, f"Enqueued {name} as job {job.job_id}.")
    log_action(request, f"run now cron {name} ({job.job_id})")
    return back(request, reverse("admin:djjobs_cron"))


def _int(value, default: int, most: int = 1_000_000) -> int:
    try:
        return min(most, max(1, int(value)))
    except (TypeError, ValueError):
        return default


def _totals(history) -> tuple[int, int]:
    return sum(p for _, p, _ in history), sum(f for _, _, f in history)
