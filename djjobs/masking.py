"""Arguments with secret-looking names masked, for every place that shows or logs them
(the admin's pages, ``manage.py jobs show``, the log line of a job whose enqueue failed
after its commit)."""
from __future__ import annotations

import dataclasses
import re
from typing import Any

import orjson

from . import conf

MASK = "********"
#: Levels of nested arguments shown; deeper ones are elided. orjson reads payloads up
#: to 1,024 levels deep, deeper than Python's json module (and this code) can recurse.
MAX_DEPTH = 64
ELIDED = f"… (nested deeper than {MAX_DEPTH} levels, not shown)"


def secret_pattern() -> re.Pattern:
    words = conf.get("ADMIN_SECRET_ARGUMENTS")
    if not words:
        return re.compile(r"(?!)")  # masks nothing (an empty alternation would match every name)
    return re.compile("|".join(re.escape(w) for w in words), re.IGNORECASE)


def masked(value: Any, pattern: re.Pattern | None = None, depth: int = 0) -> Any:
    """Arguments with secret-looking names (password, token, … — DJJOBS['ADMIN_SECRET_ARGUMENTS'])
    replaced by a mask, at any depth, including dicts stored as key/value pairs (those
    with a key that is not a str: ``{"_dj": "dict", "v": [[key, value], ...]}``).
    Containers deeper than MAX_DEPTH are replaced by ELIDED (so nothing below is shown,
    secret or not)."""
    pattern = pattern if pattern is not None else secret_pattern()
    if isinstance(value, (dict, list)) and depth >= MAX_DEPTH:
        return ELIDED
    if isinstance(value, dict):
        if value.get("_dj") == "dict" and isinstance(value.get("v"), list):
            return {**value, "v": [[pair[0], MASK if isinstance(pair[0], str) and pattern.search(pair[0])
                                    else masked(pair[1], pattern, depth + 2)]
                                   if isinstance(pair, list) and len(pair) == 2
                                   else masked(pair, pattern, depth + 2) for pair in value["v"]]}
        return {k: MASK if isinstance(k, str) and pattern.search(k) else masked(v, pattern, depth + 1)
                for k, v in value.items()}
    if isinstance(value, list):
        return [masked(v, pattern, depth + 1) for v in value]
    return value


def envelope_fields(env: Any) -> dict:
    """An envelope's fields, one level deep (``dataclasses.asdict`` copies every nested
    argument recursively, and fails on deep ones), without the error's traceback (shown
    apart); pass the result to :func:`masked` before showing it."""
    result = {field.name: getattr(env, field.name) for field in dataclasses.fields(env)}
    if isinstance(result.get("error"), dict):
        result["error"] = {k: v for k, v in result["error"].items() if k != "traceback"}
    return result


def masked_stored(raw: bytes) -> tuple[Any, bool]:
    """Stored bytes that are not an envelope this djjobs reads: (the JSON value masked as
    arguments are, True) when they are JSON at all (read by orjson, as the envelope is:
    Python's json module recurses, and fails on payloads nested deeper than about 1,000
    levels), else (the bytes as text, False)."""
    try:
        return masked(orjson.loads(raw)), True
    except orjson.JSONDecodeError:
        return bytes(raw).decode("utf-8", "replace"), False


def masked_positional(perform: Any, args: list, pattern: re.Pattern | None = None) -> list:
    """Positional arguments masked as :func:`masked` masks keyword ones: by the name
    ``perform`` gives each (``perform(self, email, password)`` called with two arguments
    masks the second). ``perform`` None (a class this process does not know): by value
    only, as :func:`masked` does."""
    import inspect
    pattern = pattern if pattern is not None else secret_pattern()
    names: list[str] = []
    try:
        params = list(inspect.signature(perform).parameters.values())[1:] if perform is not None else []
    except (TypeError, ValueError):
        params = []
    for param in params:
        if param.kind not in (param.POSITIONAL_ONLY, param.POSITIONAL_OR_KEYWORD):
            break
        names.append(param.name)
    return [MASK if n < len(names) and pattern.search(names[n]) else masked(value, pattern, 1)
            for n, value in enumerate(args)]
