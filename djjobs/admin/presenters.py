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
    return re.compile("|".join(re.escape(w) for w in words), re.IGNORECASE)


def masked(value: Any, pattern: re.Pattern | None = None) -> Any:
    """Arguments with secret-looking names (password, token, … — DJJOBS['ADMIN_SECRET_ARGUMENTS'])
    replaced by a mask, at any depth."""
    pattern = pattern or secret_pattern()
    if isinstance(value, dict):
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
        "attempts": env.executions if env else 0, "error_class": error.get("class", "").rsplit(".", 1)[-1],
        "error_message": short(error.get("message", ""), 160), "at": when(record.at),
        "enqueued_at": when(env.enqueued_at) if env else None,
    }


def detail(record: JobRecord) -> dict:
    env = record.envelope
    data = row(record)
    if env is not None:
        data["payload"] = json.dumps(masked(_envelope_dict(env)), indent=2, ensure_ascii=False, default=str)
        data["traceback"] = (env.error or {}).get("traceback", "")
    else:
        data["payload"] = record.raw.decode("utf-8", "replace")
        data["traceback"] = ""
    return data


def _envelope_dict(env) -> dict:
    import dataclasses
    result = dataclasses.asdict(env)
    if result.get("error"):
        result["error"] = {k: v for k, v in result["error"].items() if k != "traceback"}
    return result


def short(text: str, limit: int = 120) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
