"""What the admin shows of a job: safe, masked, readable, whatever storage holds.

Storage may hold bytes no djjobs wrote (a poison payload, a newer version, a repair
tool's mistake): every function here returns something to show for any input and
never raises, so one odd job cannot take a page down for everyone."""
from __future__ import annotations

import json
import numbers
from datetime import datetime, timezone
from typing import Any

from ..masking import envelope_fields, masked, masked_stored

#: Characters of a stored payload shown on the job page.
MAX_PAYLOAD_CHARS = 200_000
from ..adapters.base import JobRecord, concurrency_slot
from ..prerequisites import of as prerequisites_of

def when(ts: Any) -> datetime | None:
    """A stored timestamp as a datetime; None when there is none or it is no time at all
    (not a number, or outside the years datetime can hold)."""
    if not ts or isinstance(ts, bool) or not isinstance(ts, numbers.Real):
        return None
    try:
        return datetime.fromtimestamp(ts, timezone.utc)
    except (OverflowError, OSError, ValueError):
        return None


def text(value: Any) -> str:
    """Any stored value as a line of text (the admin escapes it)."""
    return value if isinstance(value, str) else "" if value is None else str(value)


def row(record: JobRecord) -> dict:
    env = record.envelope
    # The error stored beside a payload kept as it was (undecodable, or not encodable
    # again) is newer than any error inside that payload.
    error = record.error or (env.error if env else None) or {}
    return {
        "id": record.job_id, "state": record.state, "queue": record.queue or (env.queue if env else ""),
        "job": text(env.job) if env else "(undecodable payload)",
        "args": short(_json(masked(env.args))) if env else "",
        "kwargs": short(_json(masked(env.kwargs))) if env else "",
        "attempts": env.executions if env else 0, "error_class": text(error.get("class")).rsplit(".", 1)[-1],
        "error_message": short(text(error.get("message")), 160), "at": when(record.at),
        "enqueued_at": when(env.enqueued_at) if env else None,
        "concurrency_key": text((concurrency_slot(env) or ("",))[0]),
        "waits_for": (prerequisites_of(env.meta) or ([], ""))[0] if env is not None else [],
    }


def detail(record: JobRecord) -> dict:
    env = record.envelope
    data = row(record)
    if env is not None:
        data["payload"] = _json(masked(_envelope_dict(env)), indent=2)
        data["traceback"] = text((env.error or {}).get("traceback"))
    else:  # not an envelope this djjobs reads (a poison payload, or one from a newer version)
        data["payload"] = _masked_raw(record.raw)
        data["traceback"] = ""
    data["payload"] = short(data["payload"], MAX_PAYLOAD_CHARS)
    data["progress"] = progress(env.meta if env is not None else None)
    return data


def progress(meta: Any) -> dict | None:
    """A continuation's stored progress (djjobs/continuations.py) as text to show: the step
    begun and its cursor, the finished steps, the resumptions; None for a job without steps."""
    stored = meta.get("progress") if isinstance(meta, dict) else None
    if not isinstance(stored, dict):
        return None
    current = stored.get("current")
    step, cursor = (current[0], current[1]) if isinstance(current, list) and len(current) == 2 else (None, None)
    completed = stored.get("completed")
    return {"step": text(step), "cursor": short(_json(cursor)) if step is not None else "",
            "completed": ", ".join(text(n) for n in completed) if isinstance(completed, list) else text(completed),
            "resumptions": text(stored.get("resumptions", 0))}


def _json(value: Any, indent: int | None = None) -> str:
    return json.dumps(value, indent=indent, ensure_ascii=False, default=str)


def _masked_raw(raw: bytes) -> str:
    """Stored bytes as text, masked like an envelope's arguments when they are JSON at all."""
    value, is_json = masked_stored(raw)
    return _json(value, indent=2) if is_json else value


_envelope_dict = envelope_fields


def short(text: str, limit: int = 120) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def busy(entry: Any, now: float) -> dict:
    """One job a worker's heartbeat says it runs, as the Workers page shows it (the
    registry is storage too: any field may be missing or of another type)."""
    entry = entry if isinstance(entry, dict) else {}
    started = entry.get("started_at")
    started = started if isinstance(started, numbers.Real) and not isinstance(started, bool) else now
    return {"job_id": text(entry.get("job_id")), "job": text(entry.get("job")) or "(unknown job)",
            "queue": text(entry.get("queue")), "running": now - started}


def worker(info: Any, now: float) -> dict:
    """One live worker as the Workers page shows it."""
    def age(ts: Any) -> float | None:
        return now - ts if isinstance(ts, numbers.Real) and not isinstance(ts, bool) else None
    entries = info.busy if isinstance(info.busy, list) else []
    return {"w": info, "busy": [busy(entry, now) for entry in entries], "uptime": age(info.started_at),
            "seen": age(info.heartbeat_at),
            "queues": ", ".join(map(text, info.queues)) if isinstance(info.queues, list) else text(info.queues)}
