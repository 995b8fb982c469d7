"""``jobs show JOB_ID``: one job in full, as stored, with secrets masked.

Arguments whose names look secret (``DJJOBS["ADMIN_SECRET_ARGUMENTS"]``: password, token,
…) are masked at any depth, keyword ones by their key and positional ones by the name
``perform`` gives them; the error and its traceback are shown apart. A payload that does
not decode is shown as text, masked like arguments when it is JSON at all."""
from __future__ import annotations

from typing import Any

from django.core.management.base import CommandError

from .. import registry
from ..job_status import of_record
from ..masking import envelope_fields, masked, masked_positional, masked_stored
from .common import add_json, adapter as configured_adapter, storage, unknown_job, write_json
from .overview import describe


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("show", help="One job in full: payload (secrets masked), error, traceback.",
                              description="One job's status, its stored payload with secret-looking argument "
                                          "names masked (DJJOBS['ADMIN_SECRET_ARGUMENTS']), its last error and "
                                          "traceback.")
    p.add_argument("job_id", metavar="JOB_ID", help="A job id.")
    add_json(p)
    p.set_defaults(run=run_show)


def run_show(command: Any, options: dict) -> None:
    adapter, job_id = configured_adapter(), options["job_id"]
    with storage(adapter, "look up jobs"):
        record = adapter.get(job_id) or adapter.get_finished(job_id)
        found = of_record(adapter, record) if record is not None else None
    if record is None:
        raise CommandError(unknown_job(adapter, job_id))
    env = record.envelope
    if env is not None:
        cls = registry.lookup(env.job)
        fields = envelope_fields(env)
        fields["args"] = masked_positional(cls.perform if cls is not None else None, list(env.args))
        payload: Any = masked({k: v for k, v in fields.items() if k != "args"})
        payload = {"args": fields["args"], **payload}
    else:
        payload, _ = masked_stored(record.raw)
    error = found.error or {}
    traceback = error.get("traceback") if isinstance(error.get("traceback"), str) else ""
    if options.get("json"):
        return write_json(command, {"status": found.as_dict(), "payload": payload, "traceback": traceback})
    w = command.stdout.write
    for line in describe(found):
        w(line)
    if env is None:
        w(f"Payload ({len(record.raw):,} bytes) does not decode as a djjobs envelope; as stored:")
    else:
        w("Payload:")
    w(_pretty(payload))
    if traceback:
        w("Traceback:")
        w(traceback.rstrip())


def _pretty(value: Any) -> str:
    import json
    return value if isinstance(value, str) else json.dumps(value, indent=2, ensure_ascii=False, default=str)
