"""The one envelope every adapter stores, and its JSON encoding.

The envelope is the whole truth about a job between enqueue and execution:
adapters may index some of its fields (queue, priority, run_at) but must
store the encoded bytes unchanged and hand them back byte-exact.
``version`` lets a newer djjobs read what an older one wrote.
"""
from __future__ import annotations

import dataclasses
import time
import uuid
from typing import Any

import orjson

from .errors import PayloadError

VERSION = 1


@dataclasses.dataclass(slots=True)
class Envelope:
    """A job as stored.

    ``executions`` counts the times the job has started; ``exception_executions``
    counts failures per retry declaration (so ``retry_on(attempts=5)`` counts only
    its own exceptions, as in ActiveJob); ``deaths`` counts workers that died
    while running it. ``error`` is the last failure, kept for the retry and
    dead sets. ``scheduled_at`` is the cron tick a job belongs to, if any.
    """

    job: str
    args: list = dataclasses.field(default_factory=list)
    kwargs: dict = dataclasses.field(default_factory=dict)
    queue: str = "default"
    priority: int = 0
    job_id: str = dataclasses.field(default_factory=lambda: uuid.uuid4().hex)
    enqueued_at: float = dataclasses.field(default_factory=time.time)
    run_at: float | None = None
    executions: int = 0
    exception_executions: dict[str, int] = dataclasses.field(default_factory=dict)
    deaths: int = 0
    error: dict | None = None
    scheduled_at: float | None = None
    meta: dict = dataclasses.field(default_factory=dict)
    version: int = VERSION

    def encode(self) -> bytes:
        # Fields by hand, not dataclasses.asdict(): it deep-copies, and this is the enqueue hot path.
        return orjson.dumps({
            "job": self.job, "args": self.args, "kwargs": self.kwargs, "queue": self.queue,
            "priority": self.priority, "job_id": self.job_id, "enqueued_at": self.enqueued_at,
            "run_at": self.run_at, "executions": self.executions, "exception_executions": self.exception_executions,
            "deaths": self.deaths, "error": self.error, "scheduled_at": self.scheduled_at, "meta": self.meta,
            "version": self.version})

    @classmethod
    def decode(cls, data: bytes | str) -> "Envelope":
        """Parse stored bytes; raise PayloadError (never anything else) when they are not an envelope."""
        try:
            raw = orjson.loads(data)
        except (orjson.JSONDecodeError, TypeError) as exc:
            # The message never quotes the payload: it is logged and stored, and may hold secrets.
            raise PayloadError(f"Undecodable job payload ({exc}; {len(data):,} bytes).") from None
        return cls.from_dict(raw)

    @classmethod
    def from_dict(cls, raw: Any) -> "Envelope":
        if not isinstance(raw, dict) or not isinstance(raw.get("job"), str):
            raise PayloadError(f"Job payload is not a djjobs envelope (a JSON {type(raw).__name__} without a "
                               "'job' name).")
        version = raw.get("version", VERSION)
        if type(version) is not int:
            raise PayloadError(f"Job payload has a malformed envelope version (a {type(version).__name__}, "
                               "not an integer).")
        if version > VERSION:
            raise PayloadError(f"Job payload has envelope version {version}, newer than this djjobs "
                               f"understands ({VERSION}); upgrade djjobs on this worker.")
        try:
            if tuple(raw) == _ORDER:  # as encode() writes it: positional, 4x faster than keywords
                env = cls(*raw.values())
            elif raw.keys() <= _FIELDS:
                env = cls(**raw)
            else:
                env = cls(**{k: v for k, v in raw.items() if k in _FIELDS})
        except TypeError as exc:
            raise PayloadError(f"Job payload has malformed fields: {exc}") from None
        if not env._well_typed():
            raise PayloadError(f"Job payload has malformed fields: {env._type_errors()}")
        return env

    def _well_typed(self) -> bool:
        """The fields every step computes with have their types (a payload written by
        hand or by another program may not), so a bad one is a PayloadError here, at
        decoding, and never a TypeError later in lease recovery or a retry."""
        return (isinstance(self.args, list) and isinstance(self.kwargs, dict) and isinstance(self.queue, str)
                and type(self.priority) is int and isinstance(self.job_id, str)
                and type(self.enqueued_at) in (float, int) and (self.run_at is None or type(self.run_at) in (float, int))
                and type(self.executions) is int and isinstance(self.exception_executions, dict)
                and type(self.deaths) is int and (self.error is None or isinstance(self.error, dict))
                and (self.scheduled_at is None or type(self.scheduled_at) in (float, int))
                and isinstance(self.meta, dict))

    def _type_errors(self) -> str:
        numbers, optional_numbers = (int, float), (int, float, type(None))
        expected = {"args": list, "kwargs": dict, "queue": str, "priority": int, "job_id": str,
                    "enqueued_at": numbers, "run_at": optional_numbers, "executions": int,
                    "exception_executions": dict, "deaths": int, "error": (dict, type(None)),
                    "scheduled_at": optional_numbers, "meta": dict}
        bad = [f"{name} is a {type(getattr(self, name)).__name__}" for name, types in expected.items()
               if not isinstance(getattr(self, name), types) or isinstance(getattr(self, name), bool)]
        return ", ".join(bad)

    def copy(self, **changes: Any) -> "Envelope":
        """A shallow copy with ``changes`` applied (dataclasses.replace, without its cost:
        this runs for every job)."""
        new = Envelope(self.job, self.args, self.kwargs, self.queue, self.priority, self.job_id, self.enqueued_at,
                       self.run_at, self.executions, self.exception_executions, self.deaths, self.error,
                       self.scheduled_at, self.meta, self.version)
        for name, value in changes.items():
            if name not in _FIELDS:
                raise TypeError(f"Envelope has no field {name!r}")
            setattr(new, name, value)
        return new

    def started(self) -> "Envelope":
        """The copy a run works on: one more execution, its own exception counts, no run_at
        (``copy`` with those changes, minus its checks: this runs for every job)."""
        new = self.copy()
        new.run_at, new.executions, new.exception_executions = None, self.executions + 1, dict(self.exception_executions)
        return new

    def describe(self) -> str:
        return f"{self.job} id={self.job_id} queue={self.queue}"


_ORDER = tuple(f.name for f in dataclasses.fields(Envelope))
_FIELDS = frozenset(_ORDER)
