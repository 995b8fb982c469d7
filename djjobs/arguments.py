"""Job arguments <-> JSON-safe data, with model instances passed by reference.

The supported types are a short, closed list (ActiveJob's rule): None, bool,
int (any size), float (NaN and infinities included), str, list, tuple, dict
(any keys of supported types, insertion order kept), datetime/date/time/
timedelta (time zones kept: a ``zoneinfo`` zone by its key, any other tzinfo
by its UTC offset), Decimal, UUID, and saved model instances. Anything else
raises :class:`SerializationError` at enqueue time, in the caller.

Model instances are stored as a GlobalID-style URI ``gid://djjobs/<app_label>.<Model>/<pk>``
and loaded fresh from the database when the job runs; a row that no longer
exists raises :class:`DeserializationError` then. Only models of installed
apps are ever looked up: a payload can never make us import a module.

Everything that is not plain JSON is written as a one-key-marked object
``{"_dj": <tag>, ...}``; a user dict that happens to contain the key ``_dj``
is itself wrapped, so decoding is unambiguous.
"""
from __future__ import annotations

import datetime as dt
import decimal
import math
import uuid
from typing import Any
from zoneinfo import ZoneInfo

from django.apps import apps
from django.db import models

from .errors import DeserializationError, SerializationError

TAG = "_dj"
GID_PREFIX = "gid://djjobs/"
_INT64 = 2**63 - 1


def serialize(args: tuple | list, kwargs: dict) -> tuple[list, dict]:
    """Encode positional and keyword arguments; raise SerializationError naming the culprit."""
    if not args and not kwargs:
        return [], {}
    out_args = [_encode(value, f"argument {i}") for i, value in enumerate(args)]
    out_kwargs = {}
    for key, value in kwargs.items():
        if not isinstance(key, str):
            raise SerializationError(f"Keyword argument names must be str, got {key!r}.")
        out_kwargs[key] = _encode(value, f"keyword argument {key!r}")
    return out_args, out_kwargs


def deserialize(args: list, kwargs: dict) -> tuple[list, dict]:
    """Decode what :func:`serialize` produced, loading referenced models."""
    if not args and not kwargs:
        return [], {}
    return [_decode(v) for v in args], {k: _decode(v) for k, v in kwargs.items()}


def model_gid(instance: models.Model) -> str:
    meta = instance._meta
    return f"{GID_PREFIX}{meta.app_label}.{meta.object_name}/{instance.pk}"


def _encode(value: Any, where: str) -> Any:
    if value is None or isinstance(value, (bool, str)):
        if isinstance(value, str):
            _check_text(value, where)
        return value
    if isinstance(value, int):
        return value if -_INT64 - 1 <= value <= _INT64 else {TAG: "int", "v": str(value)}
    if isinstance(value, float):
        return value if math.isfinite(value) else {TAG: "float", "v": repr(value)}
    if isinstance(value, list):
        return [_encode(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, tuple):
        return {TAG: "tuple", "v": [_encode(v, f"{where}[{i}]") for i, v in enumerate(value)]}
    if isinstance(value, dict):
        return _encode_dict(value, where)
    if isinstance(value, models.Model):
        if value.pk is None:
            raise SerializationError(
                f"{where} is an unsaved {type(value).__name__} instance: save it before enqueueing, "
                "since model arguments are passed by reference (app label, model, primary key).")
        return {TAG: "gid", "v": model_gid(value)}
    if isinstance(value, dt.datetime):
        return {TAG: "datetime", "v": value.isoformat(), **_zone(value.tzinfo)}
    if isinstance(value, dt.date):
        return {TAG: "date", "v": value.isoformat()}
    if isinstance(value, dt.time):
        return {TAG: "time", "v": value.isoformat(), **_zone(value.tzinfo)}
    if isinstance(value, dt.timedelta):
        return {TAG: "timedelta", "v": [value.days, value.seconds, value.microseconds]}
    if isinstance(value, decimal.Decimal):
        return {TAG: "decimal", "v": str(value)}
    if isinstance(value, uuid.UUID):
        return {TAG: "uuid", "v": str(value)}
    raise SerializationError(
        f"{where} has unsupported type {type(value).__module__}.{type(value).__qualname__} ({_short(value)}). "
        "Job arguments may be None, bool, int, float, str, list, tuple, dict, date/time types, Decimal, UUID "
        "or saved model instances; pass an id or a plain dict instead.")


def _encode_dict(value: dict, where: str) -> Any:
    if all(isinstance(k, str) for k in value) and TAG not in value:
        return {k: _encode(v, f"{where}[{k!r}]") for k, v in value.items()}
    return {TAG: "dict", "v": [[_encode(k, f"{where} key {k!r}"), _encode(v, f"{where}[{k!r}]")]
                               for k, v in value.items()]}


def _zone(tz: dt.tzinfo | None) -> dict:
    return {"tz": tz.key} if isinstance(tz, ZoneInfo) else {}


def _check_text(value: str, where: str) -> None:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise SerializationError(f"{where} is a str with a lone surrogate, which JSON cannot carry; "
                                 "pass bytes-free, valid Unicode text.") from None


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _decode(value: Any) -> Any:
    if isinstance(value, list):
        return [_decode(v) for v in value]
    if not isinstance(value, dict):
        return value
    tag = value.get(TAG)
    if tag is None:
        return {k: _decode(v) for k, v in value.items()}
    try:
        decoder = _DECODERS[tag]
    except KeyError:
        raise DeserializationError(f"Unknown argument tag {tag!r} in the payload: it was written by a newer "
                                   "djjobs or is corrupt.") from None
    try:
        return decoder(value)
    except DeserializationError:
        raise
    except (ValueError, TypeError, KeyError, LookupError, decimal.InvalidOperation) as exc:
        raise DeserializationError(f"Cannot decode {tag} argument {value!r}: {exc}") from exc


def _decode_datetime(value: dict) -> dt.datetime:
    result = dt.datetime.fromisoformat(value["v"])
    return result.replace(tzinfo=ZoneInfo(value["tz"])) if "tz" in value else result


def _decode_time(value: dict) -> dt.time:
    result = dt.time.fromisoformat(value["v"])
    return result.replace(tzinfo=ZoneInfo(value["tz"])) if "tz" in value else result


def _decode_gid(value: dict) -> models.Model:
    uri = value["v"]
    if not uri.startswith(GID_PREFIX) or "/" not in uri[len(GID_PREFIX):]:
        raise DeserializationError(f"Malformed model reference {uri!r}.")
    label, pk = uri[len(GID_PREFIX):].split("/", 1)
    try:
        model = apps.get_model(label)
    except (LookupError, ValueError):
        raise DeserializationError(f"Model reference {uri!r} names {label!r}, which is not an installed model.") from None
    try:
        return model._default_manager.get(pk=model._meta.pk.to_python(pk))
    except model.DoesNotExist:
        raise DeserializationError(
            f"{label} with pk={pk!r} no longer exists (referenced by {uri}); it was deleted after the job "
            "was enqueued. Use @discard_on(DeserializationError) to drop such jobs quietly.") from None


_DECODERS = {
    "int": lambda v: int(v["v"]),
    "float": lambda v: float(v["v"]),
    "tuple": lambda v: tuple(_decode(x) for x in v["v"]),
    "dict": lambda v: {_decode(k): _decode(x) for k, x in v["v"]},
    "gid": _decode_gid,
    "datetime": _decode_datetime,
    "date": lambda v: dt.date.fromisoformat(v["v"]),
    "time": _decode_time,
    "timedelta": lambda v: dt.timedelta(days=v["v"][0], seconds=v["v"][1], microseconds=v["v"][2]),
    "decimal": lambda v: decimal.Decimal(v["v"]),
    "uuid": lambda v: uuid.UUID(v["v"]),
}
