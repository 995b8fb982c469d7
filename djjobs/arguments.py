"""Job arguments <-> JSON-safe data, with model instances passed by reference.

The supported types are a short, closed list (ActiveJob's rule): None, bool,
int (any size), float (NaN and infinities included), str, list, tuple, dict
(any keys of supported types, insertion order kept), datetime/date/time/
timedelta (time zones kept: a ``zoneinfo`` zone by its key, any other tzinfo
by its UTC offset), Decimal, UUID, and saved model instances. Anything else
raises :class:`SerializationError` at enqueue time, in the caller. A subclass of
a supported type is stored as that type (an ``IntEnum`` member as its int, a
``TextChoices`` member as its str, an ``OrderedDict`` as a dict); a
``MultiValueDict`` such as ``request.POST`` is refused, since a dict would keep
one value per key.

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
from django.core.exceptions import ValidationError
from django.db import models
from django.utils.datastructures import MultiValueDict

from .errors import DeserializationError, SerializationError

TAG = "_dj"
GID_PREFIX = "gid://djjobs/"
_INT64 = 2**63 - 1


def serialize(args: tuple | list, kwargs: dict) -> tuple[list, dict]:
    """Encode positional and keyword arguments; raise SerializationError naming the culprit."""
    if not args and not kwargs:
        return [], {}
    try:
        out_args = [_encode(value, f"argument {i}") for i, value in enumerate(args)]
        out_kwargs = {}
        for key, value in kwargs.items():
            if not isinstance(key, str):
                raise SerializationError(f"Keyword argument names must be str, got {key!r}.")
            _check_text(key, f"keyword argument name {key!r}")
            out_kwargs[key] = _encode(value, f"keyword argument {key!r}")
    except RecursionError:
        raise SerializationError("The job's arguments are nested too deeply, or a list or dict contains "
                                 "itself; pass flatter data.") from None
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
    if isinstance(value, int):  # (an int subclass, such as an IntEnum member, is stored as its int)
        value = int(value)
        return value if -_INT64 - 1 <= value <= _INT64 else {TAG: "int", "v": str(value)}
    if isinstance(value, float):
        value = float(value)
        return value if math.isfinite(value) else {TAG: "float", "v": repr(value)}
    if isinstance(value, list):
        return [_encode(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, tuple):
        return {TAG: "tuple", "v": [_encode(v, f"{where}[{i}]") for i, v in enumerate(value)]}
    if isinstance(value, MultiValueDict):
        raise SerializationError(f"{where} is a {type(value).__name__} (such as request.POST), whose keys may "
                                 "hold several values that a dict would lose; pass dict(value.lists()).")
    if isinstance(value, dict):
        return _encode_dict(value, where)
    if isinstance(value, models.Model):
        return {TAG: "gid", "v": _checked_gid(value, where)}
    if isinstance(value, dt.datetime):
        return {TAG: "datetime", "v": value.isoformat(), **_zone(value)}
    if isinstance(value, dt.date):
        return {TAG: "date", "v": value.isoformat()}
    if isinstance(value, dt.time):
        return {TAG: "time", "v": value.isoformat(), **_zone(value)}
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
        for key in value:
            _check_text(key, f"{where} key {key!r}")
        return {str(k): _encode(v, f"{where}[{k!r}]") for k, v in value.items()}
    return {TAG: "dict", "v": [[_encode(k, f"{where} key {k!r}"), _encode(v, f"{where}[{k!r}]")]
                               for k, v in value.items()]}


def _zone(value: dt.datetime | dt.time) -> dict:
    """A zoneinfo zone by its key (a zone loaded from a file has none: its offset, in the
    ISO text, is kept instead), and ``fold`` for the second of a repeated wall time."""
    tz = value.tzinfo
    if not isinstance(tz, ZoneInfo) or not tz.key:
        return {}
    return {"tz": tz.key, "fold": 1} if value.fold else {"tz": tz.key}


def _checked_gid(value: models.Model, where: str) -> str:
    """The reference of a model instance that a worker can load again, or SerializationError."""
    meta = value._meta
    if value.pk is None or value._state.adding:
        raise SerializationError(
            f"{where} is an unsaved {type(value).__name__} instance: save it before enqueueing, "
            "since model arguments are passed by reference (app label, model, primary key).")
    if isinstance(value.pk, tuple):
        raise SerializationError(f"{where} is a {type(value).__name__}, whose primary key is composite; pass "
                                 "its key values instead.")
    try:
        apps.get_model(meta.app_label, meta.model_name)
    except LookupError:
        raise SerializationError(f"{where} is a {meta.label} instance, a model of an app that is not installed: "
                                 "a worker could not load it.") from None
    return model_gid(value)


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
        # Neither the value nor the decoder's message (which quotes it): arguments may be secrets.
        raise DeserializationError(f"Cannot decode a {tag} argument (a {type(value).__name__} the {tag} decoder "
                                   f"refuses: {type(exc).__name__}).") from None


def _decode_datetime(value: dict) -> dt.datetime:
    result = dt.datetime.fromisoformat(value["v"])
    return result.replace(tzinfo=ZoneInfo(value["tz"]), fold=value.get("fold", 0)) if "tz" in value else result


def _decode_time(value: dict) -> dt.time:
    result = dt.time.fromisoformat(value["v"])
    return result.replace(tzinfo=ZoneInfo(value["tz"]), fold=value.get("fold", 0)) if "tz" in value else result


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
    except (ValidationError, ValueError, TypeError) as exc:
        raise DeserializationError(f"Model reference {uri!r} has a malformed primary key ({exc}).") from None
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
