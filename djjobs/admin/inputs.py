"""The admin's inputs (search text, filters, queue names, job ids, page numbers), checked
before they reach the adapter. A bad one raises :class:`InvalidInput`, whose text says
what is wrong and what to do; the pages show it as a message, never as an error page."""
from __future__ import annotations

from typing import Iterable
from urllib.parse import unquote

from .. import conf

MAX_SEARCH = 500
MAX_JOB_NAME = 255
MAX_PAGE = 1_000_000
#: The admin's own forms send their values percent-encoded (with ``encoding=url``): an
#: HTML form would turn a newline into CR LF and a NUL into U+FFFD, and so act on
#: another job id or queue name than the one shown.
ENCODED = "url"


class InvalidInput(ValueError):
    """A request value the admin refuses; its text is shown to the user."""


def posted(request, name: str) -> list[str]:
    """The values of a POST field, decoded when the admin's own form encoded them."""
    values = request.POST.getlist(name)
    return [unquote(v) for v in values] if request.POST.get("encoding") == ENCODED else values


def page_number(value: str | None) -> int:
    if value in (None, ""):
        return 1
    try:
        number = int(value)
    except ValueError:
        number = 0
    if not 1 <= number <= MAX_PAGE:
        raise InvalidInput(f"Page {short(value)!r} is not a page number: use a whole number from 1 to "
                           f"{MAX_PAGE:,}. Showing page 1.")
    return number


def search(value: str | None) -> str | None:
    return _text(value, "The search", MAX_SEARCH, "Search for a job id, an error text or an argument.")


def job_name(value: str | None) -> str | None:
    return _text(value, "The job class filter", MAX_JOB_NAME, "Pick a job class from the list.")


def queue_name(value: str | None, known: Iterable[str]) -> str:
    """A queue name as djjobs accepts it (DJJOBS['QUEUES'] rules), or one the storage lists
    (it may hold a queue written by other means; acting on it must stay possible)."""
    value = value or ""
    if value in set(known):
        return value
    try:
        return conf.check_queue_name(value)
    except ValueError as exc:
        raise InvalidInput(f"{str(exc).replace(repr(value), repr(short(value)))} No queue of that name is "
                           "stored either.") from None


def _text(value: str | None, what: str, limit: int, hint: str) -> str | None:
    if not value:
        return None
    if "\x00" in value:
        raise InvalidInput(f"{what} contains a NUL character, which cannot be searched for (PostgreSQL "
                           f"cannot store one): leave it out. {hint}")
    if len(value) > limit:
        raise InvalidInput(f"{what} is {len(value):,} characters long: at most {limit:,}. {hint}")
    return value


def short(value: str, limit: int = 60) -> str:
    return value if len(value) <= limit else value[:limit - 1] + "…"
