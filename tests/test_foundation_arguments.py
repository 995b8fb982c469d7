"""Arguments: the supported types round-trip faithfully; models go by reference;
anything else is refused at enqueue time, naming the argument."""
import datetime as dt
import decimal
import math
import uuid
from zoneinfo import ZoneInfo

import pytest

from djjobs import DeserializationError, SerializationError
from djjobs.arguments import deserialize, serialize
from djjobs.envelope import Envelope
from djjobs.testing import assert_no_enqueued_jobs
from tests.jobs import EchoJob
from tests.models import Article, Token


def round_trip(*args, **kwargs):
    a, k = serialize(args, kwargs)
    env = Envelope(job="x", args=a, kwargs=k)
    decoded = Envelope.decode(env.encode())  # through the stored bytes, as a worker sees them
    return deserialize(decoded.args, decoded.kwargs)


@pytest.mark.parametrize("value", [
    None, True, False, 0, -1, 2**63 - 1, -(2**63), 2**64, -(2**200), 1.5, -0.0, 1e308, "",
    "text", "nul\x00byte", "astral \U0001F600\U00010348", "quote\"back\\slash\n", [], [1, [2, [3]]],
    (), (1, (2, "x")), {}, {"a": {"b": [1, 2]}}, {1: "int key", (1, 2): "tuple key", None: 0},
    {"_dj": "looks like a tag", "x": 1}, {"nested": {"_dj": "tuple", "v": [1]}},
    dt.datetime(2026, 3, 29, 2, 30, tzinfo=ZoneInfo("Europe/Berlin")), dt.datetime(2026, 1, 1, 12, 0),
    dt.datetime(2026, 1, 1, 12, 0, 0, 123456, tzinfo=dt.timezone(dt.timedelta(hours=5, minutes=30))),
    dt.date(2026, 2, 28), dt.time(23, 59, 59, 999999), dt.time(8, 0, tzinfo=ZoneInfo("America/New_York")),
    dt.timedelta(days=-3, seconds=5, microseconds=7), decimal.Decimal("12.3400"), decimal.Decimal("-1E+30"),
    uuid.UUID("12345678-1234-5678-1234-567812345678"),
])
def test_supported_values_round_trip_faithfully(value):
    (back,), _ = round_trip(value)
    assert back == value and type(back) is type(value)
    if isinstance(value, dt.datetime) and isinstance(value.tzinfo, ZoneInfo):
        assert back.tzinfo.key == value.tzinfo.key
    if isinstance(value, dict):
        assert list(back) == list(value)  # order kept


def test_special_floats_round_trip():
    (nan, inf, ninf), _ = round_trip(math.nan, math.inf, -math.inf)
    assert math.isnan(nan) and inf == math.inf and ninf == -math.inf


def test_kwargs_round_trip():
    args, kwargs = round_trip(1, when=dt.date(2026, 1, 2), tags=("a", "b"))
    assert args == [1] and kwargs == {"when": dt.date(2026, 1, 2), "tags": ("a", "b")}


@pytest.mark.django_db
def test_models_go_by_reference_and_load_fresh():
    article = Article.objects.create(title="first")
    token = Token.objects.create(name="t")
    a, k = serialize([article], {"token": token})
    assert a == [{"_dj": "gid", "v": f"gid://djjobs/tests.Article/{article.pk}"}]
    assert k["token"]["v"] == f"gid://djjobs/tests.Token/{token.pk}"
    Article.objects.filter(pk=article.pk).update(title="changed after enqueue")
    (loaded,), kwargs = deserialize(a, k)
    assert loaded.title == "changed after enqueue" and kwargs["token"] == token


@pytest.mark.django_db
def test_a_deleted_row_raises_deserialization_error():
    article = Article.objects.create(title="gone soon")
    a, k = serialize([article], {})
    article.delete()
    with pytest.raises(DeserializationError, match=r"tests.Article with pk='\d+' no longer exists"):
        deserialize(a, k)


@pytest.mark.parametrize("bad, where, type_name", [
    ({1, 2}, "argument 0", "builtins.set"),
    (object(), "argument 0", "builtins.object"),
    (b"bytes", "argument 0", "builtins.bytes"),
    ([1, {"deep": frozenset()}], "argument 0[1]['deep']", "builtins.frozenset"),
])
def test_unsupported_types_are_named(bad, where, type_name):
    with pytest.raises(SerializationError) as info:
        serialize([bad], {})
    assert where in str(info.value) and type_name in str(info.value)


def test_unsaved_model_is_refused():
    with pytest.raises(SerializationError, match="unsaved Article"):
        serialize([], {"article": Article(title="x")})


def test_lone_surrogates_are_refused():
    with pytest.raises(SerializationError, match="lone surrogate"):
        serialize(["\ud800"], {})


def test_bad_argument_enqueues_nothing(enqueued_jobs):
    with pytest.raises(SerializationError, match="keyword argument 'when'"):
        EchoJob.perform_later(1, when={1, 2})
    assert_no_enqueued_jobs()


def test_forged_model_reference_cannot_name_other_things():
    with pytest.raises(DeserializationError, match="not an installed model"):
        deserialize([{"_dj": "gid", "v": "gid://djjobs/os.system/1"}], {})
    with pytest.raises(DeserializationError, match="Unknown argument tag"):
        deserialize([{"_dj": "pickle", "v": "x"}], {})


def test_text_that_json_cannot_carry_is_refused_in_keys_and_names_too():
    with pytest.raises(SerializationError, match="lone surrogate"):
        serialize([{"\ud800": 1}], {})
    with pytest.raises(SerializationError, match="lone surrogate"):
        serialize([], {"\ud800": 1})


def test_self_containing_or_too_deep_arguments_are_serialization_errors():
    loop = []
    loop.append(loop)
    with pytest.raises(SerializationError, match="nested too deeply"):
        serialize([loop], {})


def test_subclasses_are_stored_as_their_base_type_and_a_multivaluedict_is_refused():
    import enum
    from collections import OrderedDict
    from django.utils.datastructures import MultiValueDict

    class Size(enum.IntEnum):
        BIG = 2

    class Ratio(float):
        pass

    args, _ = serialize([Size.BIG, Ratio(0.5), OrderedDict(a=1)], {})
    env = Envelope(job=EchoJob.job_name, args=args)
    assert deserialize(Envelope.decode(env.encode()).args, {})[0] == [2, 0.5, {"a": 1}]
    with pytest.raises(SerializationError, match="MultiValueDict"):
        serialize([MultiValueDict({"tag": ["a", "b"]})], {})


def test_the_second_of_a_repeated_wall_time_keeps_its_instant():
    zone = ZoneInfo("America/New_York")
    later = dt.datetime(2024, 11, 3, 1, 30, tzinfo=zone, fold=1)  # EST, the second 01:30
    [back], _ = deserialize(*serialize([later], {}))
    assert back.timestamp() == later.timestamp() and back.fold == 1 and back.tzinfo.key == "America/New_York"


def test_a_zone_without_a_key_is_kept_by_its_offset():
    import zoneinfo
    with open(zoneinfo.TZPATH[0] + "/Europe/Paris", "rb") as data:
        zone = ZoneInfo.from_file(data)
    value = dt.datetime(2024, 7, 1, 12, tzinfo=zone)
    [back], _ = deserialize(*serialize([value], {}))
    assert back == value and back.utcoffset() == dt.timedelta(hours=2)


@pytest.mark.django_db
def test_model_instances_a_worker_could_not_load_are_refused():
    with pytest.raises(SerializationError, match="unsaved Token"):
        serialize([Token(name="has a default pk, not saved")], {})


def test_a_reference_with_a_malformed_primary_key_is_a_deserialization_error():
    with pytest.raises(DeserializationError, match="malformed primary key"):
        deserialize([{"_dj": "gid", "v": "gid://djjobs/tests.Token/not-a-uuid"}], {})


def test_arguments_deeper_than_the_encoder_writes_are_refused_at_enqueue_with_a_hint():
    """orjson reads 1,024 levels but writes 254: such arguments are refused in the caller
    (a stored one could not be written back by a retry or lease recovery)."""
    from djjobs.adapters.memory import MemoryAdapter
    deep = []
    for _ in range(300):
        deep = [deep]
    with pytest.raises(SerializationError, match="nested deeper than about 250 levels"):
        MemoryAdapter().enqueue(Envelope(job="tests.jobs.EchoJob", args=serialize([deep], {})[0]))
