"""``settings.DJJOBS``: defaults, validation, and the one accessor.

Everything else in djjobs reads settings through :func:`get` so that a test
that overrides ``DJJOBS`` (``override_settings``) is seen at once.
"""
from __future__ import annotations

import math
import re
from typing import Any

from django.conf import settings as django_settings
from django.core.signals import setting_changed
from django.dispatch import receiver

ADAPTERS = {
    "inline": "djjobs.adapters.inline.InlineAdapter",
    "async": "djjobs.adapters.async_thread.AsyncAdapter",
    "test": "djjobs.adapters.testing.TestAdapter",
    "memory": "djjobs.adapters.memory.MemoryAdapter",
    "redis": "djjobs.adapters.redis.RedisAdapter",
    "database": "djjobs.adapters.database.DatabaseAdapter",
}

QUEUE_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,99}$")

# name -> (default, allowed types)
DEFAULTS: dict[str, tuple[Any, tuple[type, ...]]] = {
    "ADAPTER": ("database", (str,)),
    "QUEUES": (["default"], (list, tuple)),
    "DATABASE": ("default", (str,)),
    "REDIS_URL": ("redis://127.0.0.1:6379/0", (str,)),
    "REDIS_CACHE_ALIAS": (None, (str, type(None))),
    "REDIS_PREFIX": ("djjobs", (str,)),
    "RETRY_ATTEMPTS": (25, (int,)),
    "MAX_PAYLOAD_BYTES": (1024 * 1024, (int,)),
    "LEASE_SECONDS": (60, (int, float)),
    "MAX_WORKER_DEATHS": (3, (int,)),
    "DEAD_MAX_JOBS": (10_000, (int,)),
    "DEAD_MAX_DAYS": (180, (int, float)),
    "FINISHED_RETENTION_SECONDS": (86_400, (int, float)),
    "BATCH_RETENTION_SECONDS": (7 * 86_400, (int, float)),
    "CONCURRENCY": (10, (int,)),
    "ASYNC_CONCURRENCY": (100, (int,)),
    "ASYNC_LAG_WARNING": (0.25, (int, float)),
    "SHUTDOWN_TIMEOUT": (25, (int, float)),
    "POLL_INTERVAL": (1.0, (int, float)),
    "PREFETCH_SECONDS": (0.05, (int, float)),
    "ASYNC_THREADS": (5, (int,)),
    "LOG_ARGUMENTS": (False, (bool,)),
    "CRON": ({}, (dict,)),
    "JOB_MODULES": ([], (list, tuple)),
    "ADMIN_SECRET_ARGUMENTS": (["password", "passwd", "secret", "token", "api_key", "apikey", "authorization",
                                "credential", "private_key"], (list, tuple)),
    "OPTIONS": ({}, (dict,)),
}

# The smallest value that makes sense, for the numeric settings (a negative lease or
# timeout, zero threads... are configuration mistakes, reported by the system checks).
MINIMUMS: dict[str, float] = {
    "RETRY_ATTEMPTS": 0, "MAX_PAYLOAD_BYTES": 1, "LEASE_SECONDS": 1, "MAX_WORKER_DEATHS": 1, "DEAD_MAX_JOBS": 0,
    "DEAD_MAX_DAYS": 0, "FINISHED_RETENTION_SECONDS": 0, "BATCH_RETENTION_SECONDS": 0, "CONCURRENCY": 1,
    "ASYNC_CONCURRENCY": 1, "ASYNC_LAG_WARNING": 0.01, "SHUTDOWN_TIMEOUT": 0,
    "POLL_INTERVAL": 0.01, "PREFETCH_SECONDS": 0, "ASYNC_THREADS": 1, "FETCH_POLL_INTERVAL": 0.001,
}

_cache: dict[str, Any] | None = None


def get(name: str | None = None) -> Any:
    """The effective value of one setting (or the whole merged dict)."""
    global _cache
    if _cache is None:
        merged = {key: default for key, (default, _) in DEFAULTS.items()}
        user = getattr(django_settings, "DJJOBS", None) or {}
        if isinstance(user, dict):  # else the system checks report it (E002); the defaults apply meanwhile
            merged.update(user)
        _cache = merged
    return _cache if name is None else _cache[name]


def user_settings() -> Any:
    return getattr(django_settings, "DJJOBS", None)


def validate() -> list[tuple[str, str, str]]:
    """Problems with ``settings.DJJOBS`` as (check id, message, hint) triples."""
    raw = user_settings()
    if raw is None:
        return []
    if not isinstance(raw, dict):
        return [("djjobs.E002", f"DJJOBS must be a dict, not {type(raw).__name__}.",
                 'Set DJJOBS = {"ADAPTER": "database"} (or leave it out for the defaults).')]
    problems = []
    for key, value in raw.items():
        if key not in DEFAULTS:
            problems.append(("djjobs.E004", f"DJJOBS has an unknown key {key!r}.",
                             "Known keys: " + ", ".join(sorted(DEFAULTS)) + "."))
            continue
        problems += _check_value(f"DJJOBS[{key!r}]", key, value, DEFAULTS[key][1])
    queues = raw.get("QUEUES")
    for name in queues if isinstance(queues, (list, tuple)) else []:
        if not isinstance(name, str) or not QUEUE_NAME_RE.match(name):
            problems.append(("djjobs.E003", f"DJJOBS['QUEUES'] has a malformed queue name {name!r}.",
                             "Queue names are 1-100 characters of letters, digits, '_', '.', ':' and '-', starting with a letter or digit."))
    if isinstance(queues, (list, tuple)) and not queues:
        problems.append(("djjobs.E003", "DJJOBS['QUEUES'] is empty: workers need at least one queue.",
                         "Default: ['default']."))
    for key in ("JOB_MODULES", "ADMIN_SECRET_ARGUMENTS"):
        items = raw.get(key)
        if isinstance(items, (list, tuple)) and not all(isinstance(item, str) for item in items):
            problems.append(("djjobs.E002", f"DJJOBS[{key!r}] must be a list of str, not {items!r}.",
                             f"Default: {DEFAULTS[key][0]!r}."))
    options = raw.get("OPTIONS")
    for key, value in options.items() if isinstance(options, dict) else ():
        where = f"DJJOBS['OPTIONS'][{key!r}]"
        if key in ADAPTER_OPTIONS:
            problems += _check_value(where, key, value, ADAPTER_OPTIONS[key])
        elif key in DEFAULTS:
            problems.append(("djjobs.E004", f"{where} has no effect: adapters read only "
                             + ", ".join(sorted(ADAPTER_OPTIONS)) + " from OPTIONS.",
                             f"Set DJJOBS[{key!r}] instead."))
    return problems


# What an adapter reads from its OPTIONS before the DJJOBS setting of the same name
# (Adapter.setting); other keys there are for custom adapters.
ADAPTER_OPTIONS: dict[str, tuple[type, ...]] = {
    **{key: DEFAULTS[key][1] for key in ("DATABASE", "REDIS_URL", "REDIS_CACHE_ALIAS", "REDIS_PREFIX",
                                          "MAX_PAYLOAD_BYTES", "LEASE_SECONDS", "DEAD_MAX_JOBS", "DEAD_MAX_DAYS",
                                          "FINISHED_RETENTION_SECONDS", "ASYNC_THREADS")},
    "FETCH_POLL_INTERVAL": (int, float),
}
UNBOUNDED = {"DEAD_MAX_DAYS", "FINISHED_RETENTION_SECONDS"}  # float("inf"): keep forever


def _check_value(where: str, key: str, value: Any, types: tuple[type, ...]) -> list[tuple[str, str, str]]:
    default = f"Default: {DEFAULTS[key][0]!r}." if key in DEFAULTS else ""
    if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
        names = " or ".join(t.__name__ for t in types)
        return [("djjobs.E002", f"{where} must be {names}, not {type(value).__name__} ({value!r}).", default)]
    if isinstance(value, float) and (math.isnan(value) or (math.isinf(value) and key not in UNBOUNDED)):
        return [("djjobs.E002", f"{where} = {value!r} is not a finite number.", default)]
    if key in MINIMUMS and value < MINIMUMS[key]:
        return [("djjobs.E002", f"{where} = {value!r} is below its minimum, {MINIMUMS[key]!r}.", default)]
    return []


_good_names: set[str] = set()


def check_queue_name(name: Any) -> str:
    """Return ``name`` or raise ValueError naming the rule it breaks."""
    if name in _good_names:
        return name
    if not isinstance(name, str) or not QUEUE_NAME_RE.match(name):
        raise ValueError(f"Malformed queue name {name!r}: use 1-100 characters of letters, digits, "
                         "'_', '.', ':' and '-', starting with a letter or digit.")
    if len(_good_names) < 10_000:
        _good_names.add(name)
    return name


@receiver(setting_changed)
def _reset(setting: str, **kwargs: Any) -> None:
    global _cache
    if setting == "DJJOBS":
        _cache = None
        from djjobs.adapters import reset_adapter
        reset_adapter()
