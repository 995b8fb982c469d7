"""Arguments with secret-looking names masked, for every place that shows or logs them
(the admin's pages, the log line of a job whose enqueue failed after its commit)."""
from __future__ import annotations

import re
from typing import Any

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
