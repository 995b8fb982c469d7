"""Cancellation racing real workers (docs/cancellation.md): `runjobs -p 2` processes on Redis,
SQLite and PostgreSQL, cancels sent from this process while they drain, worker processes
SIGKILLed around a cancel, prerequisites cancelled while their dependants are enqueued, and
cancels of concurrency-limited and unique jobs. Every wait is bounded; each random choice is
seeded and the seed is in the failure message."""
import collections
import os
import random
import signal
import time

import pytest

import djjobs
from djjobs import perform_all_later
from djjobs.adapters import use_adapter
from tests.fixtures.worker import ONE_BACKEND, wait_for
from tests.worker_jobs import (CoopPidJob, DrainJob, LimitedCoopJob, LinkJob, UniqueCoopJob,
                               listen_for_cancel_signals, stop_listening_for_cancel_signals)

pytestmark = [pytest.mark.timeout(120), pytest.mark.django_db(transaction=True, databases="__all__")]


def lines(trace):
    return [line.split() for line in trace.read_text().splitlines()] if trace.exists() else []


def seeded():
    seed = int(os.environ.get("DJJOBS_RACE_SEED") or time.time_ns() % 1_000_000)
    return random.Random(seed), f"seed {seed} (DJJOBS_RACE_SEED={seed} repeats it)"


def state_of(adapter, job_id):
    record = adapter.get(job_id)
    return None if record is None else record.state


def settled(adapter):
    """Nothing left ready, scheduled, retrying, running, blocked or waiting."""
    c = adapter.counts()
    return (c.enqueued, c.scheduled, c.retry, c.busy, c.blocked, c.waiting) == (0, 0, 0, 0, 0, 0)


# --- 1. cancels racing the drain ----------------------------------------------------------------

def test_cancels_racing_the_drain_end_every_job_exactly_once(backend, start_worker, tmp_path):
    """300 DrainJobs (a quarter sleep 30 ms) drained by runjobs -p 2 -c 5 while this process
    cancels a random half of them, one by one and in small batches, as fast as it can. Then:
    every job is either succeeded (ran once, forgotten) or cancelled, never both, none left;
    "cancelled" means it never started; None means it had run; "cancelling" means it was
    running, and a run whose start read came after the request was stored saw the request;
    the counts add up; job_cancelled was sent once per cancelled job, by this process for the
    ones cancelled at once and by the worker for the ones that stopped for the request."""
    rng, seed = seeded()
    trace, adapter = tmp_path / "trace", backend.adapter
    jobs = [DrainJob(str(trace), f"d{i}", 0.03 if i % 4 == 0 else 0.0) for i in range(300)]
    token = {j.job_id: j.arguments[1] for j in jobs}
    targets = rng.sample([j.job_id for j in jobs], 150)
    results: dict[str, tuple[str | None, float]] = {}
    listen_for_cancel_signals(DrainJob)
    try:
        with use_adapter(adapter):
            perform_all_later(jobs)
            start_worker("-p", "2", "-c", "5")
            wait_for(lambda: any(f[0] == "ran" for f in lines(trace)), 60, "the first job to run")
            i = 0
            while i < len(targets):
                if rng.random() < 0.2:  # a batch
                    batch = targets[i:i + 5]
                    done = djjobs.cancel_many(batch)
                    at = time.time()
                    results.update((job_id, (done.get(job_id), at)) for job_id in batch)
                    i += len(batch)
                else:
                    results[targets[i]] = (djjobs.cancel(targets[i]), time.time())
                    i += 1
        ended_cancelling_at = time.time()

        def all_ended():
            ran = {f[1] for f in lines(trace) if f[0] == "ran"}
            return settled(adapter) and len(ran) + adapter.counts().cancelled == 300
        wait_for(all_ended, 60, f"all 300 jobs to end ({seed})", interval=0.1)
        time.sleep(0.3)  # a job that were to run late (or twice) would show now
    finally:
        stop_listening_for_cancel_signals(DrainJob)
    events = lines(trace)
    ran = [f for f in events if f[0] == "ran"]
    saw = {f[1]: f for f in events if f[0] == "saw"}
    ran_by_token = {}
    for f in ran:
        assert f[1] not in ran_by_token, f"{f[1]} ran twice ({seed})"
        ran_by_token[f[1]] = f
    assert not set(ran_by_token) & set(saw), seed
    states = {j.job_id: state_of(adapter, j.job_id) for j in jobs}
    tally = {"cancelled": 0, "cancelling": 0, None: 0}
    for job_id, state in states.items():
        name = token[job_id]
        what, at = results.get(job_id, ("not asked", None))
        if what in tally:
            tally[what] += 1
        if name in ran_by_token:
            assert state is None, f"{name} ran and succeeded, but is {state} ({seed})"
        else:
            assert state == "cancelled", f"{name} never ran, and is {state} ({seed})"
        if what == "not asked":
            assert name in ran_by_token, f"{name} was never cancelled and did not run ({seed})"
        elif what == "cancelled":
            assert name not in ran_by_token and name not in saw, f"{name}: cancel() said cancelled, it ran ({seed})"
        elif what is None:
            assert name in ran_by_token, f"{name}: cancel() found nothing to cancel, yet it never ran ({seed})"
            assert float(ran_by_token[name][2]) < at, seed
        else:
            assert what == "cancelling", (name, what)
            assert name in ran_by_token or name in saw, seed
            if name in ran_by_token:  # its start read storage before the request was stored
                assert float(ran_by_token[name][2]) < at, \
                    f"{name} read self.cancelled after cancel() returned 'cancelling' and ran anyway ({seed})"
    for name, f in saw.items():
        job_id = next(j for j, t in token.items() if t == name)
        assert results[job_id][0] == "cancelling", f"{name} saw a request, cancel() said {results[job_id][0]} ({seed})"
    counts = adapter.counts()
    assert counts.cancelled == 300 - len(ran) == tally["cancelled"] + len(saw), (counts, tally, len(saw), seed)
    assert (counts.processed, counts.failed, counts.dead) == (len(ran), 0, 0), (counts, seed)
    assert tally["cancelled"] > 0, f"no cancel landed before its job ran: the race did not happen ({tally}, {seed})"
    # job_cancelled: once per cancelled job, from this process (job=None) or from the run's worker
    heard = [f for f in events if f[0] == "signal"]
    by_caller = sorted(f[1] for f in heard if f[3] == "caller")
    by_worker = sorted(f[1] for f in heard if f[3] == "worker")
    assert by_caller == sorted(j for j, (what, _) in results.items() if what == "cancelled"), seed
    assert {f[2] for f in heard if f[3] == "caller"} <= {str(os.getpid())}
    assert sorted(token[j] for j in by_worker) == sorted(saw), seed
    for f in heard:
        if f[3] == "worker":
            assert f[2] == saw[token[f[1]]][3], "the signal came from the process that ran the job"
    print(f"{backend.name}: {tally}, saw {len(saw)}, ran {len(ran)}; cancels took "
          f"{ended_cancelling_at - min(at for _, at in results.values()):.2f} s ({seed})")


# --- 2. cancel vs worker deaths -----------------------------------------------------------------

def started(trace, *tokens):
    seen = {f[1]: f for f in lines(trace) if f[0] == "start"}
    return all(t in seen for t in tokens) and seen


def events_of(trace, token):
    return [f for f in lines(trace) if f[1] == token]


def test_cancel_around_a_sigkill_of_the_worker_processes(backend, start_worker, tmp_path):
    """runjobs -p 2 -c 3 runs cooperative jobs a and d (20 s each) and a control c (1.5 s). a is
    cancelled ("cancelling"), then every worker process running them is SIGKILLed; d is
    cancelled right after the kill, racing the supervisor, which settles a dead process'
    claims at once (a death each, back to the queue). a ends cancelled without running again,
    d ends cancelled (stopping at once if it was claimed again), and c, killed too, runs again
    to success: the kill was real and recovery still reruns what nobody cancelled."""
    trace, adapter = tmp_path / "trace", backend.adapter
    worker = start_worker("-p", "2", "-c", "3")
    with use_adapter(adapter):
        a = CoopPidJob.perform_later(str(trace), "a", 400)
        d = CoopPidJob.perform_later(str(trace), "d", 400)
        c = CoopPidJob.perform_later(str(trace), "c", 30)
        seen = wait_for(lambda: started(trace, "a", "d", "c"), 60, "the three jobs to start")
        assert djjobs.cancel(a.job_id) == "cancelling"
        pids = {int(seen[t][2]) for t in "adc"}
        assert pids <= set(worker.children()), (pids, worker.children())
        assert not any(f[0] == "done" for f in lines(trace)), "c ended before the kill: the machine is too slow"
        for pid in pids:
            os.kill(pid, signal.SIGKILL)
        d_said = djjobs.cancel(d.job_id)
    assert d_said in ("cancelling", "cancelled"), d_said
    wait_for(lambda: state_of(adapter, a.job_id) == state_of(adapter, d.job_id) == "cancelled"
             and any(f[0] == "done" for f in events_of(trace, "c")) and state_of(adapter, c.job_id) is None, 30,
             "a and d cancelled, c rerun to success")
    # never rerun (it may have seen the request just before the kill)
    assert [f[0] for f in events_of(trace, "a")] in (["start"], ["start", "stopped"])
    d_events = [f[0] for f in events_of(trace, "d")]
    assert d_events in (["start"], ["start", "start", "stopped"]), d_events
    assert "done" not in d_events
    c_events = events_of(trace, "c")
    assert [f[0] for f in c_events] == ["start", "start", "done"] and c_events[-1][3] == "2", c_events
    assert state_of(adapter, c.job_id) is None
    time.sleep(0.5)
    assert settled(adapter)
    counts = adapter.counts()
    assert (counts.cancelled, counts.dead) == (2, 0), counts
    assert "counted a death" in worker.output()


def test_cancel_before_and_after_a_sigkill_of_the_whole_worker_lease_recovery(backend, start_worker, tmp_path):
    """runjobs -p 2 -c 3 runs cooperative jobs a and b (20 s each) and a control c (1.5 s). a is
    cancelled ("cancelling"); the supervisor and its worker processes are SIGKILLed, so nobody
    settles their claims; b is cancelled while its lease runs out ("cancelling": still running,
    no worker left). A second runjobs recovers the expired leases: a and b end cancelled
    without running again, c runs again to success."""
    trace, adapter = tmp_path / "trace", backend.adapter
    first = start_worker("-p", "2", "-c", "3")
    with use_adapter(adapter):
        a = CoopPidJob.perform_later(str(trace), "a", 400)
        b = CoopPidJob.perform_later(str(trace), "b", 400)
        c = CoopPidJob.perform_later(str(trace), "c", 30)
        seen = wait_for(lambda: started(trace, "a", "b", "c"), 60, "the three jobs to start")
        assert djjobs.cancel(a.job_id) == "cancelling"
        children = first.children()
        assert {int(seen[t][2]) for t in "abc"} <= set(children)
        first.signal(signal.SIGKILL)
        for pid in children:
            os.kill(pid, signal.SIGKILL)
        first.wait(10)
        assert not any(f[0] == "done" for f in lines(trace)), "c ended before the kill: the machine is too slow"
        assert djjobs.cancel(b.job_id) == "cancelling"
        # (a may have seen its request and stored its end just before the kill)
        a_was = state_of(adapter, a.job_id)
        assert a_was == "running" or (a_was == "cancelled" and "stopped" in [f[0] for f in events_of(trace, "a")])
        time.sleep(0.3)
        assert [state_of(adapter, j.job_id) for j in (a, b, c)] == [a_was, "running", "running"]  # nobody settled them
        start_worker("-p", "2", "-c", "3")
    wait_for(lambda: state_of(adapter, a.job_id) == state_of(adapter, b.job_id) == "cancelled"
             and any(f[0] == "done" for f in events_of(trace, "c")) and state_of(adapter, c.job_id) is None, 30,
             "lease recovery")
    # neither ran again (a may have seen its request just before the kill; b was asked after it)
    assert [f[0] for f in events_of(trace, "a")] in (["start"], ["start", "stopped"])
    assert [f[0] for f in events_of(trace, "b")] == ["start"]
    c_events = events_of(trace, "c")
    assert [f[0] for f in c_events] == ["start", "start", "done"] and c_events[-1][3] == "2", c_events
    time.sleep(0.5)
    assert settled(adapter)
    counts = adapter.counts()
    assert (counts.cancelled, counts.dead, counts.failed) == (2, 0, 0), counts


# --- 3. prerequisites cancelled while their dependants are enqueued -------------------------------

def test_cancelled_prerequisites_end_their_chains_while_dependants_are_enqueued(backend, start_worker, tmp_path):
    """80 heads (50 ms each) drained by runjobs -p 2 -c 4 while this process enqueues, for each,
    a middle link after it and a tail after the middle, cancelling random heads before or after
    their middle's enqueue and random middles. A chain below a job cancelled before it ran
    ends dead with PrerequisiteFailed naming it, without running; every other link runs once,
    after its prerequisite; nothing stays waiting."""
    rng, seed = seeded()
    trace, adapter = tmp_path / "trace", backend.adapter
    heads = [LinkJob(str(trace), f"h{i}", 0.05) for i in range(80)]
    said: dict[str, str | None] = {}
    chains = []
    with use_adapter(adapter):
        perform_all_later(heads)
        start_worker("-p", "2", "-c", "4")
        wait_for(lambda: any(f[0] == "end" for f in lines(trace)), 60, "the first head to run")
        for i, head in enumerate(heads):
            if rng.random() < 0.3:
                said[head.job_id] = djjobs.cancel(head.job_id)
            mid = LinkJob.set(after=[head]).perform_later(str(trace), f"m{i}")
            if head.job_id not in said and rng.random() < 0.3:
                said[head.job_id] = djjobs.cancel(head.job_id)
            tail = LinkJob.set(after=[mid]).perform_later(str(trace), f"t{i}")
            if rng.random() < 0.15:
                said[mid.job_id] = djjobs.cancel(mid.job_id)
            chains.append((head, mid, tail))
    wait_for(lambda: settled(adapter), 60, f"every chain to end ({seed})", interval=0.1)
    time.sleep(0.3)
    assert settled(adapter)
    events = {}
    for kind, name, at in lines(trace):
        assert (kind, name) not in events, f"{name} ran twice ({seed})"
        events[(kind, name)] = float(at)
    expect_dead = expect_cancelled = 0
    outcomes = {"cancelled": 0, "cancelling": 0, None: 0}
    for i, (head, mid, tail) in enumerate(chains):
        h_said, m_said = said.get(head.job_id, "-"), said.get(mid.job_id, "-")
        for what in (h_said, m_said):
            if what in outcomes:
                outcomes[what] += 1
        record = {j: adapter.get(j.job_id) for j in (head, mid, tail)}
        ok = {}  # link -> it succeeded
        for link, parent, what in ((head, None, h_said), (mid, head, m_said), (tail, mid, "-")):
            name, rec = link.arguments[1], record[link]
            if what == "cancelled":
                assert rec is not None and rec.state == "cancelled", (name, rec and rec.state, seed)
                assert ("start", name) not in events, f"{name} was cancelled and ran ({seed})"
                ok[link] = False
                expect_cancelled += 1
            elif parent is not None and not ok[parent]:
                assert rec is not None and rec.state == "dead", (name, rec and rec.state, seed)
                assert rec.error["class"] == "djjobs.errors.PrerequisiteFailed", (name, seed)
                assert parent.job_id in rec.error["message"], (name, rec.error, seed)
                assert ("start", name) not in events, f"{name} ran after a prerequisite that ended badly ({seed})"
                assert what in ("-", None), f"{name}: cancel() said {what} for a job dead by then ({seed})"
                ok[link] = False
                expect_dead += 1
            else:
                assert rec is None, f"{name} should have succeeded, is {rec.state} ({seed})"
                assert ("end", name) in events, (name, seed)
                if parent is not None:
                    assert events[("start", name)] >= events[("end", parent.arguments[1])], (name, seed)
                ok[link] = True
        if h_said == "cancelled":
            assert "cancelled" in record[mid].error["message"], (record[mid].error, seed)
    counts = adapter.counts()
    assert (counts.cancelled, counts.dead) == (expect_cancelled, expect_dead), (counts, seed)
    assert outcomes["cancelled"] > 0, f"no cancel landed: the race did not happen ({outcomes}, {seed})"
    print(f"{backend.name}: cancel() said {outcomes}; {expect_dead} dead by PrerequisiteFailed ({seed})")


# --- 4. concurrency limits and unique keys --------------------------------------------------------

def intervals(trace):
    """{(group, token): [start, end or stopped]} and the kind each ended with."""
    spans, how = {}, {}
    for kind, group, name, at in lines(trace):
        if kind == "start":
            assert (group, name) not in spans, f"{group}/{name} started twice"
            spans[(group, name)] = [float(at), None]
        else:
            spans[(group, name)][1], how[(group, name)] = float(at), kind
    return spans, how


@ONE_BACKEND
def test_cancelling_limited_jobs_frees_only_the_slots_they_held(backend, start_worker, tmp_path):
    """Three groups of six LimitedCoopJobs (2 at once per group): j0 and j1 run 8 s, j2-j5 0.2 s;
    a fourth group of three, whose two ready holders are cancelled before the workers start:
    each one's slot goes to the blocked job at once, and only that one runs. Cancelling blocked jobs (j3 before the worker starts, j4 of two groups under load) admits
    nobody: the holders keep the slots and the others stay blocked. Cancelling the running
    holder j0 frees its slot when its run ends: j2 starts after j0 stopped and long before j1
    would end. Then j1 is cancelled too and the rest run, at most 2 per group at any time, in
    FIFO order; the cancelled blocked jobs never run."""
    trace, adapter = tmp_path / "trace", backend.adapter
    groups = ["g0", "g1", "g2"]
    jobs = {(g, f"j{k}"): LimitedCoopJob(str(trace), g, f"j{k}", 8.0 if k < 2 else 0.2) for g in groups for k in range(6)}
    jobs.update({("g3", f"j{k}"): LimitedCoopJob(str(trace), "g3", f"j{k}", 8.0 if k < 2 else 0.2) for k in range(3)})

    def holders():
        return {u.key: set(u.holders) for u in adapter.concurrency_uses() if u.holders}
    with use_adapter(adapter):
        for g in [*groups, "g3"]:
            perform_all_later([job for (gg, _), job in jobs.items() if gg == g])
        counts = adapter.counts()
        assert (counts.enqueued, counts.blocked) == (8, 13), counts
        assert set(djjobs.cancel_many([jobs[(g, "j3")].job_id for g in groups]).values()) == {"cancelled"}
        counts = adapter.counts()
        assert (counts.enqueued, counts.blocked, counts.cancelled) == (8, 10, 3), counts
        assert holders() == {f"race:{g}": {jobs[(g, "j0")].job_id, jobs[(g, "j1")].job_id} for g in [*groups, "g3"]}
        # g3: a ready holder cancelled gives its slot to the key's blocked job at once; then the other
        assert djjobs.cancel(jobs[("g3", "j1")].job_id) == "cancelled"
        assert holders()["race:g3"] == {jobs[("g3", "j0")].job_id, jobs[("g3", "j2")].job_id}
        assert djjobs.cancel(jobs[("g3", "j0")].job_id) == "cancelled"
        assert holders()["race:g3"] == {jobs[("g3", "j2")].job_id}
        counts = adapter.counts()
        assert (counts.enqueued, counts.blocked, counts.cancelled) == (7, 9, 5), counts
        start_worker("-p", "2", "-c", "4")
        wait_for(lambda: len(intervals(trace)[0]) >= 6, 60, "the six holders to start")
        for g in ("g0", "g1"):
            assert djjobs.cancel(jobs[(g, "j4")].job_id) == "cancelled"
        time.sleep(0.8)
        spans, _ = intervals(trace)
        assert set(spans) - {("g3", "j2")} == {(g, f"j{k}") for g in groups for k in (0, 1)}, sorted(spans)
        assert adapter.counts().blocked == 7
        for g in groups:
            assert djjobs.cancel(jobs[(g, "j0")].job_id) == "cancelling"
        wait_for(lambda: all((g, "j2") in intervals(trace)[0] for g in groups), 15, "j2 to take j0's slot")
        spans, how = intervals(trace)
        for g in groups:
            assert how[(g, "j0")] == "stopped" and spans[(g, "j2")][0] >= spans[(g, "j0")][1]
            assert (g, "j1") not in how, "j1 ended first: j2 may have had j1's slot"
        for g in groups:
            assert djjobs.cancel(jobs[(g, "j1")].job_id) == "cancelling"
    runs = {(g, t) for g in groups for t in ("j2", "j5")} | {("g2", "j4"), ("g3", "j2")}
    wait_for(lambda: settled(adapter) and {k for k, v in intervals(trace)[1].items() if v == "end"} == runs, 30,
             "the jobs left to run")
    time.sleep(0.3)
    spans, how = intervals(trace)
    assert set(spans) == runs | {(g, t) for g in groups for t in ("j0", "j1")}, sorted(spans)  # j3, j4: never
    for g in [*groups, "g3"]:
        marks = sorted([(s, 1) for (gg, _), (s, e) in spans.items() if gg == g]
                       + [(e, -1) for (gg, _), (s, e) in spans.items() if gg == g])
        running = peak = 0
        for _, step in marks:
            running += step
            peak = max(peak, running)
        assert peak <= 2, f"{g}: {peak} at once"
        order = [t for t in ("j2", "j4", "j5") if (g, t) in spans]
        assert sorted(order, key=lambda t: spans[(g, t)][0]) == order, (g, order)
    for key, job in jobs.items():
        state = state_of(adapter, job.job_id)
        assert state == (None if key in runs else "cancelled"), (key, state)
    counts = adapter.counts()
    assert (counts.cancelled, counts.dead, counts.blocked) == (13, 0, 0), counts
    assert all(not u.holders and not u.blocked for u in adapter.concurrency_uses())


@ONE_BACKEND
def test_a_cancelled_unique_job_lets_its_key_go(backend, start_worker, tmp_path):
    """A unique job's key is let go when it is cancelled: scheduled (at once), running (once its
    run stops for the request; the key is held until then) and, under load, ready jobs
    cancelled while runjobs -p 2 drains their neighbours; each new enqueue with the key is
    stored and runs."""
    rng, seed = seeded()
    trace, adapter = tmp_path / "trace", backend.adapter
    start_worker("-p", "2", "-c", "2")
    with use_adapter(adapter):
        later = UniqueCoopJob.set(wait=600).perform_later(str(trace), "s")
        assert UniqueCoopJob.perform_later(str(trace), "s").duplicate
        assert djjobs.cancel(later.job_id) == "cancelled"
        again = UniqueCoopJob.perform_later(str(trace), "s")
        assert not again.duplicate and again.job_id != later.job_id
        running = UniqueCoopJob.perform_later(str(trace), "r", 20.0)
        wait_for(lambda: any(f[:2] == ["start", "r"] for f in lines(trace)), 60, "the running holder to start")
        dup = UniqueCoopJob.perform_later(str(trace), "r")
        assert dup.duplicate and dup.job_id == running.job_id
        assert djjobs.cancel(running.job_id) == "cancelling"
        wait_for(lambda: state_of(adapter, running.job_id) == "cancelled", 15, "the running holder to stop")
        after = UniqueCoopJob.perform_later(str(trace), "r")
        assert not after.duplicate and after.job_id != running.job_id
        # under load: 8 plain jobs of 0.5 s take the 4 threads, 40 unique ones of 50 ms queue behind
        # them; each of those is cancelled, in a random order, and its key enqueued again at once.
        # (Not enqueued into an empty queue: there idle fetchers take some by hand-off, up to their
        # limits, test_a_batch_of_unique_jobs_...; this test is about jobs that wait in their queue.)
        perform_all_later([CoopPidJob(str(trace), f"b{i}", 10) for i in range(8)])
        load = [UniqueCoopJob(str(trace), f"u{i}", 0.05) for i in range(40)]
        perform_all_later(load)
        said, new = {}, {}
        for job in rng.sample(load, len(load)):
            said[job.job_id] = djjobs.cancel(job.job_id)
            redo = UniqueCoopJob.perform_later(str(trace), job.arguments[1], 0.05)
            if said[job.job_id] == "cancelled" or said[job.job_id] is None:
                assert not redo.duplicate, (job.arguments[1], said[job.job_id], seed)
                new[job.arguments[1]] = redo.job_id
            time.sleep(0.02)
    wanted = {("end", "s", again.job_id), ("end", "r", after.job_id)} | {("end", t, j) for t, j in new.items()}
    wait_for(lambda: settled(adapter) and wanted <= {tuple(f) for f in lines(trace)}, 30, "the new enqueues to run")
    for job in load:
        name = job.arguments[1]
        ran = [f for f in lines(trace) if f[1] == name and f[2] == job.job_id and f[0] != "start"]
        if said[job.job_id] == "cancelled":
            assert ran == [] and state_of(adapter, job.job_id) == "cancelled", (name, ran, seed)
    assert sum(w == "cancelled" for w in said.values()) > 0, (collections.Counter(said.values()), seed)
    assert adapter.unique_holds() == []


# --- the database adapter's cancel against an outcome committed between its statements -----------

@pytest.mark.parametrize("which", ["sqlite", "postgres"])
@pytest.mark.parametrize("outcome", ["retry", "release"])
def test_a_cancel_crossing_a_runs_outcome_is_not_lost(which, outcome, request):
    """A running job's outcome (a retry, or a release back to its queue) is being stored when
    cancel() comes: the outcome's transaction has updated the row and not committed yet. The
    cancel must then either ask the run to stop or cancel the job it finds after the commit.
    It used to look for waiting jobs and for running ones in two statements: on PostgreSQL
    (READ COMMITTED, a snapshot per statement) the first saw the job running, the second,
    after waiting for the row, saw it retrying, and cancel() answered None for a job that
    went on to run again."""
    import threading

    from django.db import connections, transaction

    from djjobs.adapters.database import DatabaseAdapter
    from djjobs.envelope import Envelope
    if which == "postgres":
        from tests.fixtures.database import require_postgres
        require_postgres()
    adapter = DatabaseAdapter({"DATABASE": "default" if which == "sqlite" else "postgres"})
    job = Envelope(job=DrainJob.job_name, args=["/dev/null", "x"])
    adapter.enqueue(job)
    [claim] = adapter.fetch(["default"], 1, 0, "w1")
    stored, done, said = threading.Event(), threading.Event(), {}

    def store_outcome():  # the outcome, its transaction held open for 0.5 s
        try:
            with transaction.atomic(using=adapter.alias):
                if outcome == "retry":
                    adapter.retry(claim, claim.envelope.copy(executions=1), adapter.clock() + 60)
                else:
                    adapter.release([claim])
                stored.set()
                time.sleep(0.5)
        finally:
            stored.set()
            connections.close_all()

    def cancel():
        try:
            said.update(adapter.cancel([job.job_id]))
        finally:
            done.set()
            connections.close_all()

    storer = threading.Thread(target=store_outcome)
    storer.start()
    assert stored.wait(10)
    canceller = threading.Thread(target=cancel)
    canceller.start()
    storer.join(15)
    canceller.join(15)
    assert done.is_set()
    state = state_of(adapter, job.job_id)
    assert said.get(job.job_id) in ("cancelled", "cancelling"), (said, state)
    assert state == "cancelled", state
    assert adapter.fetch(["default"], 1, 0, "w1") == []
    adapter.close()


# --- a defect outside cancellation, seen through it ----------------------------------------------

def test_a_batch_of_unique_jobs_is_not_all_handed_to_one_idle_worker(redis_backend, tmp_path):
    """An idle runjobs -p 1 -c 2 (2 threads, prefetch allowance 4 x 2), then 30 unique jobs of
    0.5 s in one perform_all_later. A worker claims at most its threads plus the allowance, so
    most of the 30 stay ready, and cancelling the last 10 (which no thread has started) cancels
    them. On Redis a batch of unique jobs is one enqueue.lua call per job; each used to hand its
    job to the idle fetcher again (its registration lasted until the fetcher read its messages):
    all 30 were claimed at once, and the last 10 only asked to stop ("cancelling"). Now the
    registration carries the fetcher's limit and enqueue.lua hands it no more than that."""
    from tests.fixtures.worker import Worker
    trace = tmp_path / "trace"
    worker = Worker(redis_backend, tmp_path / "worker.log", ["-p", "1", "-c", "2"])
    try:
        adapter = redis_backend.adapter
        wait_for(lambda: adapter.workers(), 30, "the worker to register")
        time.sleep(0.5)  # idle: its fetcher waits for hand-offs
        with use_adapter(adapter):
            load = [UniqueCoopJob(str(trace), f"u{i}", 0.5) for i in range(30)]
            perform_all_later(load)
            time.sleep(0.2)
            claimed = adapter.counts().busy
            said = djjobs.cancel_many([j.job_id for j in load[20:]])
        started = {f[1] for f in lines(trace) if f[0] == "start"}
        assert not started & {j.arguments[1] for j in load[20:]}
        assert claimed <= 2 + 4 * 2, f"{claimed} of 30 claimed by 2 threads"
        assert set(said.values()) == {"cancelled"}, collections.Counter(said.values())
    finally:
        worker.stop()
