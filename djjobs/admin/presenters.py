"""What the admin shows of a job: safe, masked, readable."""
from __future__ import annotations

import json
import re
from datetime import datetime, timezone
from typing import Any

from .. import conf
from ..adapters.base import JobRecord

MASK = "********"


def secret_pattern() -> re.Pattern:
    words = conf.get("ADMIN_SECRET_ARGUMENTS")
    if not words:
        return re.compile(r"(?!)")  # masks nothing (an empty alternation would match every name)
    return re.compile("|".join(re.escape(w) for w in words), re.IGNORECASE)


def masked(value: Any, pattern: re.Pattern | None = None) -> Any:
    """Arguments with secret-looking names (password, token, … — DJJOBS['ADMIN_SECRET_ARGUMENTS'])
    replaced by a mask, at any depth, including dicts stored as key/value pairs (those
    with a key that is not a str: ``{"_dj": "dict", "v": [[key, value], ...]}``)."""
    pattern = pattern if pattern is not None else secret_pattern()
    if isinstance(value, dict):
        if value.get("_dj") == "dict" and isinstance(value.get("v"), list):
            return {**value, "v": [[pair[0], MASK if isinstance(pair[0], str) and pattern.search(pair[0])
                                    else masked(pair[1], pattern)] if isinstance(pair, list) and len(pair) == 2
                                   else masked(pair, pattern) for pair in value["v"]]}
        return {k: MASK if isinstance(k, str) and pattern.search(k) else masked(v, pattern) for k, v in value.items()}
    if isinstance(value, list):
        return [masked(v, pattern) for v in value]
    return value


def when(ts: float | None) -> datetime | None:
    return datetime.fromtimestamp(ts, timezone.utc) if ts else None


def row(record: JobRecord) -> dict:
    env = record.envelope
    error = (env.error if env else None) or {}
    return {
        "id": record.job_id, "state": record.state, "queue": record.queue or (env.queue if env else ""),
        "job": env.job if env else "(undecodable payload)",
        "args": short(json.dumps(masked(env.args), ensure_ascii=False)) if env else "",
        "kwargs": short(json.dumps(masked(env.kwargs), ensure_ascii=False)) if env else "",
        "attempts": env.executions if env else 0, "error_class": str(error.get("class") or "").rsplit(".", 1)[-1],
        "error_message": short(str(error.get("message") or ""), 160), "at": when(record.at),
        "enqueued_at": when(env.enqueued_at) if env else None,
    }


def detail(record: JobRecord) -> dict:
    env = record.envelope
    data = row(record)
    if env is not None:
        data["payload"] = json.dumps(masked(_envelope_dict(env)), indent=2, ensure_ascii=False, default=str)
        data["traceback"] = (env.error or {}).get("traceback", "")
    else:  # not an envelope this djjobs reads (a poison payload, or one from a newer version)
        data["payload"] = _masked_raw(record.raw)
        data["traceback"] = ""
    return data


def _masked_raw(raw: bytes) -> str:
    """Stored bytes as text, masked like an envelope's arguments when they are JSON at all."""
    try:
        return json.dumps(masked(json.loads(raw)), indent=2, ensure_ascii=False)
    except ValueError:
        return raw.decode("utf-8", "replace")


def _envelope_dict(env) -> dict:
    import dataclasses
    result = dataclasses.asdict(env)
    if result.get("error"):
        result["error"] = {k: v for k, v in result["error"].items() if k != "traceback"}
    return result


def short(text: str, limit: int = 120) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
