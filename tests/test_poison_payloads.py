"""Payloads a worker cannot use, planted in real storage and met by a real worker: each
goes to the dead set byte-exact with the reason beside it, the worker goes on, and no
argument reaches the log (LOG_ARGUMENTS is off)."""
import pytest

from djjobs.envelope import Envelope
from tests.fixtures.worker import wait_for
from tests.worker_jobs import RecordJob

pytestmark = [pytest.mark.timeout(120), pytest.mark.django_db(transaction=True, databases="__all__")]
SECRET = "hunter2-s3cret"


def test_poison_payloads_reach_the_dead_set_with_their_reason_and_no_secret_is_logged(backend, start_worker,
                                                                                      tmp_path):
    trace = tmp_path / "trace"
    adapter = backend.adapter
    newer = (b'{"job":"%s","args":["%s"],"job_id":"newer","version":99}' % (RecordJob.job_name.encode(),
                                                                              SECRET.encode()))
    garbage = b'\x00{"password": "' + SECRET.encode() + b'"'
    not_an_envelope = b'["' + SECRET.encode() + b'"]'
    # Decodes, runs (and fails: sleep is a list), but its outcome cannot be encoded again.
    deep = (b'{"job":"%s","args":["%s","deep",' % (RecordJob.job_name.encode(), str(trace).encode())
            + b"[" * 300 + b'"' + SECRET.encode() + b'"' + b"]" * 300 + b'],"job_id":"deep"}')
    for raw in (newer, garbage, not_an_envelope, deep):
        adapter.enqueue_raw(raw, "default")
    adapter.enqueue_many(good := [Envelope(job=RecordJob.job_name, args=[str(trace), f"g{i}"]) for i in range(20)])
    worker = start_worker("-c", "2")
    wait_for(lambda: adapter.counts().dead == 4 and adapter.counts().processed >= 20, 60,
             "four dead payloads and every good job", interval=0.1)
    dead = {r.raw: r for r in adapter.jobs("dead").items}
    assert set(dead) == {newer, garbage, not_an_envelope, deep}  # byte-exact
    assert "upgrade djjobs" in dead[newer].error["message"]
    assert "Undecodable" in dead[garbage].error["message"]
    assert "not a djjobs envelope" in dead[not_an_envelope].error["message"]
    assert "cannot be stored" in dead[deep].error["message"]
    assert all(SECRET not in r.error["message"] for r in dead.values())
    ran = [line.split()[1] for line in trace.read_text().splitlines() if line.startswith("ran ")]
    assert sorted(ran) == sorted(e.args[1] for e in good)
    assert SECRET not in worker.output()
    assert "moved to the dead set" in worker.output()
