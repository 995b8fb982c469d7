"""The errors of a jobs storage that is down, told apart from bugs, and said plainly.

The admin pages and ``manage.py jobs_status`` read the storage through the adapter;
when Redis or the database cannot be used they answer with a message naming the
storage (its Redis URL, password hidden, or its database alias and server) and what
to do, instead of a traceback. Only these errors are caught: anything else is a bug
and keeps its traceback.
"""
from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

from django.db import DataError, InterfaceError, OperationalError, connections
from django.utils.connection import ConnectionDoesNotExist

from .adapters.base import Adapter


def _redis_errors() -> tuple[type[BaseException], ...]:
    try:
        import redis
    except ImportError:  # the redis adapter is not in use
        return ()
    return (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)


#: The storage cannot be used at all: not reachable, connection lost, locked.
UNAVAILABLE: tuple[type[BaseException], ...] = (OperationalError, InterfaceError, *_redis_errors())
#: The storage refused a value it was asked to look up or store (a NUL character on
#: PostgreSQL, a text longer than its column): a bad input, not an outage.
REFUSED: tuple[type[BaseException], ...] = (DataError,)


def storage_name(adapter: Adapter, exc: BaseException) -> str:
    """Which storage failed, as the user configured it (the error's family says which)."""
    if isinstance(exc, _redis_errors()):
        alias = adapter.setting("REDIS_CACHE_ALIAS")
        return f"Redis (cache alias {alias!r})" if alias else f"Redis at {redact(str(adapter.setting('REDIS_URL')))}"
    alias = adapter.setting("DATABASE")
    try:
        settings = connections[alias].settings_dict
    except ConnectionDoesNotExist:
        return f"the database DATABASES[{alias!r}] (not configured)"
    engine = settings.get("ENGINE", "").rsplit(".", 1)[-1]
    where = (f"{settings.get('HOST') or 'localhost'}:{settings.get('PORT') or 'default port'}"
             if engine != "sqlite3" else str(settings.get("NAME")))
    return f"the database DATABASES[{alias!r}] ({engine}, {where})"


def advice(exc: BaseException) -> str:
    if isinstance(exc, _redis_errors()):
        return "Check that redis-server runs and that DJJOBS['REDIS_URL'] points to it."
    return "Check that the database server runs and that DJJOBS['DATABASE'] names the right DATABASES entry."


def unavailable_message(adapter: Adapter, exc: BaseException) -> str:
    """One sentence for the user: which storage, why, what to do."""
    detail = " ".join(str(exc).split()) or "no detail"
    return f"The job storage, {storage_name(adapter, exc)}, cannot be used ({type(exc).__name__}: {detail}). {advice(exc)}"


def redact(url: str) -> str:
    """``url`` with its password replaced by ``***``."""
    try:
        parts = urlsplit(url)
        if parts.password is None:
            return url
        netloc = f"{parts.username or ''}:***@{parts.hostname or ''}" + (f":{parts.port}" if parts.port else "")
        return urlunsplit(parts._replace(netloc=netloc))
    except ValueError:
        return "(a malformed URL)"
