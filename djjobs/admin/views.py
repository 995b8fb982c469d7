"""The job pages inside the Django admin. Everything is read and changed through
the adapter contract, so the pages work the same on every adapter.

Every page renders whatever storage holds (see presenters) and checks every input
(see inputs); :func:`guarded`, around every view, is the one place where an input the
admin refuses, a value the storage refuses and a storage that is down become a message
or a clear page instead of an error 500."""
from __future__ import annotations

import functools
import time

from django.contrib import messages
from django.contrib.admin.models import CHANGE, LogEntry
from django.contrib.contenttypes.models import ContentType
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpResponseRedirect, JsonResponse
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST

from .. import registry
from ..adapters import get_adapter
from ..cancellation import cancel_many
from ..admin_models import Dashboard
from ..storage_errors import REFUSED, UNAVAILABLE, storage_name, unavailable_message
from . import batch_presenters, inputs, presenters
from .charts import history_svg
from .inputs import InvalidInput

STATES = {"scheduled": "Scheduled", "retry": "Retries", "blocked": "Blocked", "waiting": "Waiting", "dead": "Dead",
          "cancelled": "Cancelled"}
PER_PAGE = 25
LIMITS_SHOWN = 500
ACTIONS = {"scheduled": ("retry_now", "cancel", "delete"), "retry": ("retry_now", "kill", "cancel", "delete"),
           "blocked": ("cancel", "delete"), "waiting": ("cancel", "delete"),
           "dead": ("retry_now", "delete", "retry_all"),
           "cancelled": ("retry_now", "delete"),
           # no page of their own: the actions of a job's page
           "ready": ("cancel",), "running": ("cancel",)}
LABELS = {"retry_now": "Retry now", "delete": "Delete", "kill": "Kill (move to dead)", "retry_all": "Retry all",
          "cancel": "Cancel"}


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


def render(request, site, template: str, title: str, tab: str, status: int = 200, **context):
    context = {**site.each_context(request), "title": title, "tab": tab, "opts": Dashboard._meta,
               "can_change": request.user.has_perm("djjobs.change_dashboard"), "adapter": get_adapter(),
               "states": STATES, **context}
    return TemplateResponse(request, f"djjobs/admin/{template}", context, status=status)


def log_action(request, message: str) -> None:
    message = message.replace("\x00", "\\x00")  # PostgreSQL cannot store a NUL, and the admin log may live there
    LogEntry.objects.create(
        user_id=request.user.pk, content_type=ContentType.objects.get_for_model(Dashboard, for_concrete_model=False),
        object_id="", object_repr=message[:200], action_flag=CHANGE, change_message=message)


def back(request, fallback: str) -> HttpResponseRedirect:
    """To the form's ``next`` when it is a page of this site, else to ``fallback`` (the
    page the action belongs to): never to another site (an open redirect)."""
    target = request.POST.get("next", "")
    if target and url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()},
                                                  require_https=request.is_secure()):
        return HttpResponseRedirect(target)
    return HttpResponseRedirect(fallback)


def action_page(request) -> str:
    """The page a POST action belongs to (where it returns)."""
    match = request.resolver_match
    state = match.kwargs.get("state") if match else None
    if state in STATES:
        return reverse("admin:djjobs_jobs", args=[state])
    pages = {"djjobs_queue_action": "admin:djjobs_queues", "djjobs_cron_run": "admin:djjobs_cron",
             "djjobs_limits_action": "admin:djjobs_limits"}
    return reverse(pages.get(match.url_name if match else "", "admin:djjobs_dashboard_changelist"))


def guarded(view):
    """Every page goes through here. An input the admin refuses (InvalidInput) or the
    storage refuses (a DataError): a message, back on the action's page for a POST, a
    page saying so (400) for a GET. A storage that is down: a page naming it and what to
    do (503). Anything else is a bug and keeps its traceback."""
    @functools.wraps(view)
    def guarded_view(request, *args, site, **kwargs):
        try:
            return view(request, *args, site=site, **kwargs)
        except (InvalidInput, *REFUSED) as exc:
            text = str(exc) if isinstance(exc, InvalidInput) else (
                f"The job storage, {storage_name(get_adapter(), exc)}, refused a value of this request "
                f"({' '.join(str(exc).split())}). Check the job ids, queue names and search text.")
            if request.method == "POST":
                messages.error(request, text)
                return back(request, action_page(request))
            return render(request, site, "problem.html", "Bad request", "", status=400, problem=text)
        except UNAVAILABLE as exc:
            return render(request, site, "problem.html", "Job storage unavailable", "", status=503,
                          problem=unavailable_message(get_adapter(), exc))
    return guarded_view


def checked(request, check, value, default=None):
    """``check(value)``; when it refuses the value, say why (a message) and use ``default``."""
    try:
        return check(value)
    except InvalidInput as exc:
        messages.error(request, str(exc))
        return default


# --- pages ------------------------------------------------------------------
def dashboard(request, site):
    require_view(request)
    adapter = get_adapter()
    history = adapter.history(30)
    return render(request, site, "dashboard.html", "Jobs", "dashboard", counts=adapter.counts(),
                  chart=history_svg(history), history=history, totals=_totals(history),
                  **batch_presenters.dashboard_context(adapter))


def stats(request, site):
    require_view(request)
    c = get_adapter().counts()
    return JsonResponse({k: getattr(c, k) for k in ("processed", "failed", "processed_today", "failed_today",
                                                    "enqueued", "scheduled", "retry", "dead", "busy", "blocked",
                                                    "cancelled", "waiting")} | {"at": time.time()})


def queues(request, site):
    require_view(request)
    found = get_adapter().queues()
    confirm = checked(request, lambda v: v and inputs.queue_name(v, [q.name for q in found]),
                      request.GET.get("confirm_clear"))
    return render(request, site, "queues.html", "Queues", "queues", queues=found, confirm=confirm)


@require_POST
def queue_action(request, site):
    require_change(request)
    adapter, action = get_adapter(), request.POST.get("action")
    name = inputs.queue_name((inputs.posted(request, "queue") or [""])[0], [q.name for q in adapter.queues()])
    if action == "pause":
        adapter.pause(name)
    elif action == "resume":
        adapter.resume(name)
    elif action == "clear" and request.POST.get("confirm") == "yes":
        n = adapter.clear(name)
        messages.success(request, f"Cleared {n:,} job(s) from {inputs.short(name)}.")
    elif action == "clear":
        raise InvalidInput(f"Nothing cleared: clearing {inputs.short(name)!r} needs its confirmation "
                           "(the Clear… button on the Queues page).")
    else:
        raise InvalidInput(f"Unknown queue action {inputs.short(str(action))!r}: use pause, resume or clear.")
    log_action(request, f"{action} queue {name}")
    return back(request, reverse("admin:djjobs_queues"))


def jobs(request, site, state: str):
    require_view(request)
    if state not in STATES:
        raise Http404
    adapter = get_adapter()
    queue_names = [q.name for q in adapter.queues()]
    page_no = checked(request, inputs.page_number, request.GET.get("page"), default=1)
    job = checked(request, inputs.job_name, request.GET.get("job"))
    queue = checked(request, lambda v: v and inputs.queue_name(v, queue_names), request.GET.get("queue")) or None
    search = checked(request, inputs.search, request.GET.get("q"))
    if search and not request.user.has_perm("djjobs.change_dashboard"):
        page = _by_id(state, search)  # a payload search would tell whether a masked argument holds a text
    else:
        page = adapter.jobs(state, queue=queue, job=job, search=search, page=page_no, per_page=PER_PAGE)
    pages = max(1, -(-page.total // PER_PAGE))
    if page_no > pages:
        messages.warning(request, f"There is no page {page_no:,}: this list has {pages:,}.")
    return render(request, site, "jobs.html", STATES[state], state, state=state, page=page, pages=pages,
                  rows=[presenters.row(r) for r in page.items], job=job or "", queue=queue or "", q=search or "",
                  job_names=sorted(registry.registered()), actions=labelled(ACTIONS[state]),
                  queue_names=queue_names)


@require_POST
def jobs_action(request, site, state: str):
    require_change(request)
    if state not in ACTIONS:
        raise Http404
    action, adapter = request.POST.get("action"), get_adapter()
    if action not in ACTIONS[state]:
        raise InvalidInput(f"Unknown action {inputs.short(str(action))!r} on the {STATES.get(state, state)} page: use "
                           f"{', '.join(ACTIONS[state])}.")
    ids = inputs.posted(request, "ids")  # how many: DATA_UPLOAD_MAX_NUMBER_FIELDS
    if action == "retry_all":
        n = _retry_all(adapter)
    elif action == "retry_now":
        n = adapter.retry_now(ids)
    elif action == "kill":
        n = adapter.kill_now(ids)
    elif action == "cancel":
        done = cancel_many(ids)
        n = len(done)
        asked = sum(what == "cancelling" for what in done.values())
        if asked:
            messages.info(request, f"{asked:,} running job(s) asked to stop: each ends cancelled at its next "
                                   "check of self.cancelled, or when its run ends short of success.")
    else:
        n = adapter.delete(ids)
    messages.success(request, f"{action.replace('_', ' ').capitalize()}: {n:,} job(s).")
    log_action(request, f"{action} {n} {state} job(s)" + (f": {', '.join(map(inputs.short, ids[:10]))}" if ids else ""))
    return back(request, reverse("admin:djjobs_jobs", args=[state]) if state in STATES
                else reverse("admin:djjobs_dashboard_changelist"))


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


def job_detail(request, site, job_id: str | None = None):
    """``job/?id=<job id>`` (any id: a newline, a slash or ``..`` survive a query string,
    not a path), or ``job/<job id>/`` as links made before."""
    require_view(request)
    if job_id is None:
        if "id" not in request.GET:
            raise InvalidInput("No job id given: open a job from the Scheduled, Retries or Dead page.")
        job_id = request.GET["id"]
    record = get_adapter().get(job_id)
    if record is None:
        raise Http404("No such job (it may have finished).")
    adapter = get_adapter()
    job = presenters.detail(record)
    # what it waits for (djjobs/prerequisites.py), each with its state now (None: ended and forgotten)
    waits_for = [(pid, (found.state if (found := adapter.get(pid)) else None)) for pid in job["waits_for"]]
    return render(request, site, "job.html", f"Job {inputs.short(job_id)}", record.state, job=job, waits_for=waits_for,
                  actions=[a for a in labelled(ACTIONS.get(record.state, ())) if a[0] != "retry_all"],
                  **batch_presenters.job_context(adapter, record))  # its batch, or the batch it is a callback of


def workers(request, site):
    require_view(request)
    now = time.time()
    rows = [presenters.worker(w, now) for w in get_adapter().workers()]
    return render(request, site, "workers.html", "Workers", "workers", workers=rows)


def cron(request, site):
    require_view(request)
    from ..cron import parse_entries
    from .. import conf
    entries, problems = parse_entries(conf.get("CRON"))
    states = get_adapter().cron_states()
    rows = []
    for entry in entries:
        state = states.get(entry.name)
        state = state if isinstance(state, dict) else {}
        rows.append({"entry": entry, "next": (entry.next_runs(1) or [None])[0],
                     "last_tick": presenters.when(state.get("last_tick")),
                     "last_enqueued": presenters.when(state.get("last_enqueued_at")),
                     "outcome": presenters.text(state.get("last_outcome")), "job_id": state.get("last_job_id")})
    return render(request, site, "cron.html", "Cron", "cron", rows=rows, problems=problems)


@require_POST
def cron_run_now(request, site):
    require_change(request)
    from ..cron import Scheduler, parse_entries
    from .. import conf
    name = (inputs.posted(request, "name") or [""])[0]
    try:  # the valid entries: another one's problem (shown on the page) must not stop this one
        job = Scheduler(get_adapter(), parse_entries(conf.get("CRON"))[0]).run_now(name)
    except StopIteration:
        raise InvalidInput(f"No cron entry {inputs.short(name)!r} to run (DJJOBS['CRON']; an entry with a "
                           "problem shown on the Cron page cannot run).") from None
    messages.success(request, f"Enqueued {name} as job {job.job_id}.")
    log_action(request, f"run now cron {name} ({job.job_id})")
    return back(request, reverse("admin:djjobs_cron"))


def _totals(history) -> tuple[int, int]:
    return sum(p for _, p, _ in history), sum(f for _, _, f in history)


def limits(request, site):
    require_view(request)
    adapter = get_adapter()
    holds = adapter.unique_holds(LIMITS_SHOWN + 1)
    rows = [{"key": h.key, "job_id": h.job_id, "until": h.until, "expires_at": presenters.when(h.expires)}
            for h in holds[:LIMITS_SHOWN]]
    rates = [{"key": r.key, "limit": r.limit, "period": r.period, "used": r.used,
              "percent": round(100 * r.used / r.limit)} for r in adapter.rate_uses(LIMITS_SHOWN)]
    return render(request, site, "limits.html", "Limits", "limits", holds=rows,
                  holds_truncated=len(holds) > LIMITS_SHOWN, rates=rates,
                  slots=adapter.concurrency_uses(LIMITS_SHOWN))


@require_POST
def limits_action(request, site):
    require_change(request)
    action = request.POST.get("action")
    key = (inputs.posted(request, "key") or [""])[0]
    if action != "release_unique":
        raise InvalidInput(f"Unknown limits action {inputs.short(str(action))!r}: use release_unique.")
    if not key:
        raise InvalidInput("No uniqueness key to release (the Release button on the Limits page sends one).")
    if get_adapter().release_unique(key):
        messages.success(request, f"Released the uniqueness key {inputs.short(key)!r}.")
    else:
        messages.warning(request, f"The uniqueness key {inputs.short(key)!r} was not held (any more).")
    log_action(request, f"release uniqueness key {key}")
    return back(request, reverse("admin:djjobs_limits"))
