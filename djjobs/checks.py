"""System checks for ``settings.DJJOBS`` (``manage.py check`` and every command start).

djjobs.E001 unknown adapter · E002 bad option type or value · E003 malformed queue name ·
E004 unknown key · E005 adapter-specific problem · W001 async adapter with DEBUG=False ·
W002 adapter-specific advice (the database adapter on SQLite without immediate transactions) ·
W003 LEASE_SECONDS too short to be renewed with a margin ·
E010 malformed cron entry · E011 bad cron expression · E012 unknown cron job class ·
E013 unknown time zone · E014 cron arguments that do not serialize ·
E020 a Job class with a bad flow-control declaration (unique_for, unique_until, unique_conflict, rate_limit,
concurrency_limit).
"""
from __future__ import annotations

from django.conf import settings
from django.core.checks import Error, Warning, register

from . import conf
from .errors import ConfigurationError


@register("djjobs")
def check_settings(app_configs=None, **kwargs) -> list:
    messages = [Error(msg, hint=hint, id=cid) for cid, msg, hint in conf.validate()]
    if messages:
        return messages
    from .adapters import adapter_class
    name = conf.get("ADAPTER")
    try:
        cls = adapter_class(name)
    except ConfigurationError as exc:
        return [Error(str(exc), hint="Set DJJOBS['ADAPTER'] to inline, async, test, memory, redis or database.",
                      id="djjobs.E001")]
    if cls.name == "async" and not settings.DEBUG:
        messages.append(Warning(
            "DJJOBS['ADAPTER'] is 'async' with DEBUG = False: jobs live in this process' memory and are "
            "lost when it exits or restarts.",
            hint="Use the 'database' or 'redis' adapter in production.", id="djjobs.W001"))
    advice = []
    try:
        adapter = cls(conf.get("OPTIONS"))
        problems = adapter.check()
        advice = [] if problems else adapter.advice()
    except ConfigurationError as exc:
        problems = [str(exc)]
    messages += [Error(p, id="djjobs.E005") for p in problems]
    messages += [Warning(message, hint=hint, id="djjobs.W002") for message, hint in advice]
    if not problems:
        messages += _check_lease(adapter)
    return messages


MIN_SAFE_LEASE = 2.0


def _check_lease(adapter) -> list:
    """The supervisor renews leases every LEASE_SECONDS / 4 but at most twice a second, and
    hears of a claim within an eighth of the lease: under 2 s a claim may wait longer for
    its first renewal than the half lease a worker requires it to have left, and one slow
    heartbeat lets a running job's lease expire (it then runs twice). Orphan detection does
    not depend on POLL_INTERVAL (a worker watches its pipe to the supervisor), so only the
    lease itself is checked."""
    lease = adapter.setting("LEASE_SECONDS")
    if not isinstance(lease, (int, float)) or lease >= MIN_SAFE_LEASE:
        return []
    return [Warning(f"DJJOBS['LEASE_SECONDS'] = {lease!r} is under {MIN_SAFE_LEASE:g} s: leases are renewed at "
                    "most twice a second, so a running job's lease can expire before its renewal and the job "
                    "run twice.",
                    hint="Use a LEASE_SECONDS of 2 or more (default 60): it bounds how long a dead worker's "
                         "jobs wait, not how long a job may run.",
                    id="djjobs.W003")]


@register("djjobs")
def check_cron(app_configs=None, **kwargs) -> list:
    """Bad cron entries fail at startup, not at midnight."""
    from .cron import parse_entries
    if not isinstance(conf.user_settings(), dict):
        return []
    _, problems = parse_entries(conf.get("CRON"))
    return [Error(message, id=check_id) for check_id, message in problems]


@register("djjobs")
def check_job_classes(app_configs=None, **kwargs) -> list:
    """Bad flow-control declarations fail at startup, not at the first enqueue."""
    from . import concurrency, ratelimits, registry, uniqueness
    return [Error(problem, hint="See docs/flow-control.md.", obj=cls, id="djjobs.E020")
            for cls in registry.registered().values()
            for problem in (uniqueness.check_declaration(cls) + ratelimits.check_declaration(cls)
                            + concurrency.check_declaration(cls))]
