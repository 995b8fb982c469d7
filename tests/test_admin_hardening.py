"""The admin pages against hostile storage and hostile input, on every adapter: each
page renders whatever storage holds, each input is checked with a message (never an
error 500), actions redirect only within the site, and a storage that is down gets a
page naming it (HTTP 503), as ``jobs_status`` gets a CommandError. Real servers only
(Redis, PostgreSQL), stopped by PID."""
import html
import re

import pytest
from django.contrib.auth.models import User
from django.core.management import CommandError, call_command
from django.db import connections
from django.test import Client
from django.urls import reverse

from djjobs.adapters import use_adapter
from djjobs.adapters.base import WorkerInfo
from djjobs.adapters.database import DatabaseAdapter
from djjobs.adapters.redis import RedisAdapter
from djjobs.envelope import Envelope
from djjobs.errors import EnqueueError
from tests.fixtures.redis import RedisServer, require_redis
from tests.pg_server import PostgresServer, free_port

pytestmark = pytest.mark.django_db(transaction=True, databases="__all__")

ADAPTERS = ["memory_adapter", "redis_adapter", "database_sqlite_adapter", "database_postgres_adapter"]
PAGES = [("dashboard_changelist", ()), ("stats", ()), ("queues", ()), ("jobs", ("scheduled",)),
         ("jobs", ("retry",)), ("jobs", ("dead",)), ("workers", ()), ("cron", ())]
ODD_IDS = ["line\nbreak", "import/42", "nul\x00byte", "x" * 5_000, "..", "../../etc", "", "é中 ?#&%", "trailing/"]
DEEP = 1_020  # orjson reads up to 1,024 levels, writes 254; Python's json recurses ~1,000


def url(name, *args):
    return reverse(f"admin:djjobs_{name}", args=args)


@pytest.fixture(params=ADAPTERS)
def adapter(request):
    a = request.getfixturevalue(request.param)
    with use_adapter(a):
        yield a


@pytest.fixture
def admin_client():
    c = Client()
    c.force_login(User.objects.create_user("boss", password="pw", is_staff=True, is_superuser=True))
    return c


def payload(job_id="j", **fields) -> bytes:
    return Envelope(job="tests.jobs.EchoJob", job_id=job_id, **fields).encode()


def deep_envelope(job_id: str) -> bytes:
    return (b'{"job":"tests.jobs.EchoJob","job_id":"' + job_id.encode() + b'","args":' + b"[" * DEEP
            + b"]" * DEEP + b',"kwargs":{},"queue":"default","priority":0,"enqueued_at":1.0,"version":1}')


def to_dead(adapter, raw: bytes) -> bool:
    """As a worker does: claim it, kill it (stored as it was). False when the storage cannot
    hold it at all (PostgreSQL: a NUL, an id over 64 characters): nothing to render then."""
    try:
        adapter.enqueue_raw(raw, "default")
    except EnqueueError:  # (the database adapter's DataError, named)
        return False
    [claim] = adapter.fetch(["default"], 1, 0, "w")
    adapter.kill(claim, None)
    return True


def plant_hostile(adapter) -> list[str]:
    """Dead jobs with odd ids and payloads, a scheduled one at an impossible time, a worker
    whose heartbeat holds odd values. Returns the ids the storage held."""
    held = [job_id for job_id in ODD_IDS if to_dead(adapter, payload(job_id))]
    for job_id, raw in [("deep", deep_envelope("deep")),  # an envelope, decodable, 1,021 levels deep
                        (None, b'{"job":"x","args":' + b"[" * DEEP + b"]" * DEEP + b"}"),  # not an envelope
                        (None, b"\xff\xfe\x00 not UTF-8 \x80"),
                        ("far", payload("far", enqueued_at=1e300)),
                        ("secret", payload("secret", kwargs={"password": "hunter2"}))]:
        assert to_dead(adapter, raw)
        held.append(job_id)
    adapter.enqueue(Envelope(job="tests.jobs.EchoJob", job_id="year-31688", run_at=1e15))
    adapter.heartbeat(WorkerInfo("host:1:odd", "host", 1, ["default"], 2, adapter.clock(),
                                 busy=[{"job_id": "line\nbreak", "job": 7}, "not a dict", {}]), [])
    return held


def rows(page: str) -> list[tuple[str, str]]:
    """(detail link, checkbox value) of each row of a jobs page, as a browser reads them."""
    found = re.findall(r'name="ids" value="([^"]*)".*?<a href="([^"]*)"', page, re.S)
    return [(html.unescape(href), html.unescape(value)) for value, href in found]


def test_every_page_renders_whatever_storage_holds(admin_client, adapter):
    held = plant_hostile(adapter)
    for name, args in PAGES:
        response = admin_client.get(url(name, *args))
        assert response.status_code == 200, (name, args, response.content[:500])
    dead = admin_client.get(url("jobs", "dead"), {"page": 1}).content.decode()
    assert "hunter2" not in dead
    links = rows(dead)
    assert len(links) == min(25, len(held))
    for href, _ in links:
        response = admin_client.get(href)
        assert response.status_code == 200, href
        assert "hunter2" not in response.content.decode()
    deep = admin_client.get(url("job_detail"), {"id": "deep"}).content.decode()
    assert "nested deeper than" in deep
    assert admin_client.get(url("job", "line\nbreak")).status_code == 200  # the older path form too


def test_the_forms_act_on_the_ids_they_show(admin_client, adapter):
    """A browser sends a newline as CR LF and a NUL as U+FFFD: the forms encode the ids."""
    held = plant_hostile(adapter)
    page = admin_client.get(url("jobs", "dead")).content.decode()
    values = [value for _, value in rows(page)]
    response = admin_client.post(url("jobs_action", "dead"), {"action": "retry_now", "ids": values,
                                                              "encoding": "url"})
    assert response.status_code == 302
    assert adapter.counts().dead == len(held) - len(values)
    assert adapter.get("line\nbreak").state == "ready"


def test_a_queue_with_an_odd_name_can_be_paused_and_cleared(admin_client, adapter):
    try:
        adapter.enqueue_raw(payload("q1"), "odd\nqueue")
    except EnqueueError:
        pytest.skip("this storage cannot hold that queue name")
    page = admin_client.get(url("queues")).content.decode()
    value = html.unescape(re.search(r'name="queue" value="([^"]*)"', page).group(1))
    admin_client.post(url("queue_action"), {"action": "pause", "queue": value, "encoding": "url"})
    assert [q.paused for q in adapter.queues() if q.name == "odd\nqueue"] == [True]
    confirm = admin_client.get(url("queues"), {"confirm_clear": "odd\nqueue"}).content.decode()
    value = html.unescape(re.search(r'name="queue" value="([^"]*)"><input type="hidden" name="encoding" value="url">'
                                    r'<input type="hidden" name="action" value="clear"', confirm).group(1))
    admin_client.post(url("queue_action"), {"action": "clear", "queue": value, "confirm": "yes", "encoding": "url"})
    assert adapter.counts().enqueued == 0


def messages_of(response) -> str:
    return " ".join(str(m) for m in response.context["messages"]) if response.context else ""


@pytest.mark.parametrize("params, says", [
    ({"q": "nul\x00"}, "NUL"), ({"q": "x" * 501}, "at most 500"), ({"queue": "nul\x00"}, "Malformed queue name"),
    ({"queue": "q" * 101}, "Malformed queue name"), ({"job": "nul\x00"}, "NUL"), ({"job": "j" * 256}, "at most 255"),
    ({"page": "abc"}, "not a page number"), ({"page": "0"}, "not a page number"),
    ({"page": "10000000000000000000"}, "not a page number"), ({"page": "7"}, "There is no page 7")])
def test_list_inputs_are_checked_with_a_message(admin_client, adapter, params, says):
    to_dead(adapter, payload("one"))
    response = admin_client.get(url("jobs", "dead"), params)
    assert response.status_code == 200
    assert says in messages_of(response)


def test_a_viewer_search_is_checked_too(adapter):
    viewer = Client()
    u = User.objects.create_user("viewer", password="pw", is_staff=True)
    from django.contrib.auth.models import Permission
    u.user_permissions.add(Permission.objects.get(codename="view_dashboard"))
    viewer.force_login(u)
    response = viewer.get(url("jobs", "dead"), {"q": "nul\x00"})
    assert response.status_code == 200 and "NUL" in messages_of(response)


@pytest.mark.parametrize("data, says", [
    ({"action": "pause", "queue": "q" * 150}, "Malformed queue name"),
    ({"action": "resume", "queue": "nul\x00"}, "Malformed queue name"),
    ({"action": "clear", "queue": "bad name", "confirm": "yes"}, "Malformed queue name"),
    ({"action": "explode", "queue": "low"}, "Unknown queue action")])
def test_queue_actions_are_checked_with_a_message(admin_client, adapter, data, says):
    response = admin_client.post(url("queue_action"), data, follow=True)
    assert response.redirect_chain[-1][0] == url("queues")
    assert says in messages_of(response)
    assert not any(q.paused for q in adapter.queues())


def test_job_actions_are_checked_with_a_message(admin_client, adapter):
    to_dead(adapter, payload("one"))
    response = admin_client.post(url("jobs_action", "dead"), {"action": "explode", "ids": ["one"]}, follow=True)
    assert "Unknown action" in messages_of(response)
    response = admin_client.post(url("jobs_action", "dead"), {"action": "delete", "ids": ["nul\x00", "one"]},
                                 follow=True)
    assert response.redirect_chain[-1][0] == url("jobs", "dead")
    assert adapter.get("one") is None  # an id no job can have matches nothing (PostgreSQL: a NUL)


def test_a_job_page_with_an_id_the_storage_refuses(admin_client, adapter):
    response = admin_client.get(url("job_detail"), {"id": "nul\x00"})
    assert response.status_code in (400, 404)
    if response.status_code == 400:  # PostgreSQL cannot even look a NUL up
        assert "refused a value" in response.content.decode()
    response = admin_client.get(url("job_detail"))
    assert response.status_code == 400 and "No job id given" in response.content.decode()


def test_confirm_clear_and_run_now_check_their_names(admin_client, adapter):
    response = admin_client.get(url("queues"), {"confirm_clear": "bad name"})
    assert response.status_code == 200 and "Malformed queue name" in messages_of(response)
    assert "Yes, clear" not in response.content.decode()
    response = admin_client.post(url("cron_run"), {"name": "nope\x00"}, follow=True)
    assert response.redirect_chain[-1][0] == url("cron") and "No cron entry" in messages_of(response)


# --- redirects ------------------------------------------------------------------
ELSEWHERE = ["https://evil.example/", "//evil.example/", "/\\evil.example", "http:evil.example",
             "javascript:alert(1)", " //evil.example", "\x00//evil.example"]


@pytest.fixture
def memory(memory_adapter):
    with use_adapter(memory_adapter) as a:
        yield a


@pytest.mark.parametrize("target", ELSEWHERE)
def test_actions_never_redirect_off_site(admin_client, memory, target):
    to_dead(memory, payload("one"))
    for action, data, page in [
            (url("jobs_action", "dead"), {"action": "retry_now", "ids": ["one"]}, url("jobs", "dead")),
            (url("queue_action"), {"action": "pause", "queue": "low"}, url("queues")),
            (url("queue_action"), {"action": "pause", "queue": "bad name"}, url("queues")),
            (url("cron_run"), {"name": "missing"}, url("cron"))]:
        response = admin_client.post(action, {**data, "next": target})
        assert response.status_code == 302 and response["Location"] == page, (action, target)


def test_actions_redirect_within_the_site(admin_client, memory):
    to_dead(memory, payload("one"))
    here = url("jobs", "dead") + "?page=1&q=one"
    response = admin_client.post(url("jobs_action", "dead"), {"action": "delete", "ids": ["one"], "next": here})
    assert response["Location"] == here
    absolute = "http://testserver" + url("queues")
    assert admin_client.post(url("queue_action"), {"action": "pause", "queue": "low", "next": absolute}
                             )["Location"] == absolute
    secure = admin_client.post(url("queue_action"), {"action": "resume", "queue": "low", "next": absolute},
                               secure=True)
    assert secure["Location"] == url("queues")  # https page: no redirect to plain http


# --- storage down ------------------------------------------------------------------
def assert_every_page_says(client, *words):
    for name, args in PAGES + [("job", ("some-id",))]:
        response = client.get(url(name, *args))
        assert response.status_code == 503, (name, response.status_code)
        page = response.content.decode()
        for word in words:
            assert word in page, (name, word)
    response = client.post(url("queue_action"), {"action": "pause", "queue": "low"})
    assert response.status_code == 503


def test_redis_stopped(admin_client):
    require_redis()
    server = RedisServer().start()
    try:
        adapter = RedisAdapter({"REDIS_URL": server.url, "REDIS_PREFIX": "down"})
        with use_adapter(adapter):
            assert admin_client.get(url("queues")).status_code == 200
            server.stop()
            assert_every_page_says(admin_client, html.escape(f"Redis at {server.url}"), "redis-server")
            with pytest.raises(CommandError, match=re.escape(f"Redis at {server.url}")):
                call_command("jobs_status")
        adapter.close()
    finally:
        server.cleanup()


def test_redis_url_password_is_not_shown(admin_client):
    port = free_port()
    adapter = RedisAdapter({"REDIS_URL": f"redis://:s3cr3t@127.0.0.1:{port}/0", "REDIS_PREFIX": "down"})
    with use_adapter(adapter):
        page = admin_client.get(url("dashboard_changelist")).content.decode()
        assert f"127.0.0.1:{port}" in page and "s3cr3t" not in page
    adapter.close()


@pytest.fixture
def postgres_alias():
    """A connection to our own PostgreSQL server (the suite's stays up), made at run time
    (as Django allows in tests; the test's databases are set before it exists)."""
    from django.db.utils import load_backend
    try:
        server = PostgresServer().start()
    except FileNotFoundError as exc:
        pytest.skip(str(exc))
    alias = "djjobs_down"
    settings = connections.configure_settings(
        {"default": dict(connections.settings["default"]), alias: {**server.settings(), "NAME": "postgres"}})[alias]
    connections[alias] = load_backend(settings["ENGINE"]).DatabaseWrapper(settings, alias)
    try:
        yield server, alias
    finally:
        connections[alias].close()
        del connections[alias]
        server.cleanup()


def test_postgres_stopped(admin_client, postgres_alias):
    server, alias = postgres_alias
    adapter = DatabaseAdapter({"DATABASE": alias})
    with use_adapter(adapter):
        connections[alias].ensure_connection()  # a connection that was working
        server.stop()
        assert_every_page_says(admin_client, html.escape(f"DATABASES['{alias}']"), f"127.0.0.1:{server.port}",
                               "database server runs")
        with pytest.raises(CommandError, match=re.escape(f"DATABASES['{alias}']")):
            call_command("jobs_status")
    adapter.close()


def test_jobs_status_names_a_database_nothing_listens_on(postgres_alias):
    server, alias = postgres_alias
    server.stop()
    with use_adapter(DatabaseAdapter({"DATABASE": alias})):
        with pytest.raises(CommandError, match=rf"127\.0\.0\.1:{server.port}.*database server runs"):
            call_command("jobs_status")

