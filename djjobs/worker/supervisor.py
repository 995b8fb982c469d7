"""The supervisor: starts N worker processes, renews their leases, restarts
one that dies, and stops them all gracefully.

Lease renewal lives here, not in the worker processes, because a job that
holds the GIL (or blocks in C) in a worker would stall a renewal thread
there; the supervisor runs no jobs. Each worker reports the claims it holds
through a pipe; the supervisor heartbeats them every ``LEASE_SECONDS / 4``.
A worker that dies stops being renewed, so its jobs are recovered by any
worker's poller once their lease expires (at-least-once).
"""
from __future__ import annotations

import logging
import os
import selectors
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field

import orjson
from django.db import close_old_connections, connections

from .. import conf
from ..adapters.base import Adapter, Claim, WorkerInfo
from .claimlog import ClaimLog

logger = logging.getLogger("djjobs")


@dataclass
class Child:
    slot: int
    proc: subprocess.Popen
    pipe: int
    started_at: float = field(default_factory=time.time)
    worker_id: str = ""
    buffer: bytes = b""
    claims: dict[str, tuple[Claim, dict]] = field(default_factory=dict)
    done_early: set[str] = field(default_factory=set)  # a job thread's "done" that overtook its claim
    stopped: bool = False
    eof: bool = False  # its pipe closed: no longer watched (it would read as ready forever)
    log: ClaimLog | None = None  # what it does with its claims, readable after its death


class Supervisor:
    def __init__(self, adapter: Adapter, child_argv: list[str], *, processes: int, queues: list[str],
                 concurrency: int, shutdown_timeout: float, async_concurrency: int = 0):
        self.adapter, self.child_argv = adapter, child_argv
        self.processes, self.queues, self.concurrency = processes, queues, concurrency
        self.shutdown_timeout = shutdown_timeout
        self.async_concurrency = async_concurrency  # a worker's claim log has a slot per thread and async slot
        self.lease = float(adapter.setting("LEASE_SECONDS"))
        self.children: dict[int, Child] = {}
        self.selector = selectors.DefaultSelector()
        self.stopping_since: float | None = None
        self.signals = 0
        self.restarts: list[float] = []
        self.respawn_at: dict[int, float] = {}  # slot -> when to start its new worker (crash-loop back-off)
        self.beat_now = False
        self.quiet = False  # SIGTSTP received: workers started from now on start quiet too

    def install_signals(self) -> None:
        signal.signal(signal.SIGTERM, self._on_stop)
        signal.signal(signal.SIGINT, self._on_stop)
        signal.signal(signal.SIGTSTP, self._on_quiet)

    def _on_quiet(self, signum, frame) -> None:
        self.quiet = True
        self._forward(signal.SIGTSTP)

    def _on_stop(self, signum, frame) -> None:
        self.signals += 1
        if self.stopping_since is None:
            self.stopping_since = time.monotonic()
        self._forward(signum if self.signals == 1 else signal.SIGINT)

    def _forward(self, signum: int) -> None:
        for child in self.children.values():
            if child.proc.poll() is None:
                os.kill(child.proc.pid, signum)

    # --- children ----------------------------------------------------------
    def _spawn(self, slot: int) -> None:
        if self.stopping_since is not None:
            return
        read_fd, write_fd = os.pipe()
        log = ClaimLog.create(self.concurrency + self.async_concurrency)
        argv = [*self.child_argv, "--pipe-fd", str(write_fd), "--claims-fd", str(log.fd),
                *(["--start-quiet"] if self.quiet else [])]
        proc = subprocess.Popen(argv, pass_fds=(write_fd, log.fd), start_new_session=True, env=child_env())
        os.close(write_fd)
        os.set_blocking(read_fd, False)
        child = Child(slot, proc, read_fd, log=log)
        self.children[slot] = child
        self.selector.register(read_fd, selectors.EVENT_READ, child)

    def _reap(self, child: Child) -> None:
        self._drain(child)
        if not child.eof:
            self.selector.unregister(child.pipe)
        os.close(child.pipe)
        if child.worker_id:
            try:
                self.adapter.unregister(child.worker_id)
            except Exception as exc:
                logger.error("Could not unregister %s: %s", child.worker_id, exc)
        if not child.stopped and child.log is not None:  # it died: settle its claims now, off this loop
            threading.Thread(target=self._settle, args=(child,), name="djjobs-settle", daemon=True).start()
        elif child.log is not None:
            child.log.close()

    def _settle(self, child: Child) -> None:
        """A worker died (it never said "stopped"): settle its claims by what its claim log
        says it was doing, instead of leaving all of them to lease recovery, which counts a
        death against each. Running jobs get a death, finished ones are acknowledged, and
        the rest (prefetched, never started) go back to the front of their queues unchanged.
        A claim told over the pipe but missing from the log counts as not started. Each
        call is fenced by the lease token; if the storage cannot be reached, the leases
        recover the claims (each with a death) as before."""
        log, pid, code = child.log, child.proc.pid, child.proc.returncode
        try:
            running, finished, others = log.settle()
            known = {*running, *finished, *others}
            others += [key for key in child.claims if key not in known]
            claim = lambda key: Claim(None, b"", key, child.worker_id, 0.0)  # noqa: E731 - (see Claim.token)
            how = f"pid {pid}, {_exit_text(code)}"
            if finished:
                self.adapter.complete([claim(k) for k in finished])
            died = self.adapter.abandon([claim(k) for k in running], how) if running else 0
            if others:
                self.adapter.release([claim(k) for k in others])
            logger.warning("Worker %s: %d running job(s) counted a death (%d moved), %d finished job(s) "
                           "acknowledged, up to %d unstarted claim(s) handed back", how, len(running), died,
                           len(finished), len(others))
        except Exception as exc:
            logger.error("Settling the jobs of worker pid %d failed (%s: %s); they return to their queues "
                         "when their lease expires", pid, type(exc).__name__, exc)
        finally:
            log.close()
            connections.close_all()  # this thread's own, as it ends

    def _drain(self, child: Child) -> None:
        if child.eof:
            return
        try:
            while chunk := os.read(child.pipe, 65536):
                child.buffer += chunk
            child.eof = True
            self.selector.unregister(child.pipe)
        except BlockingIOError:
            pass
        *lines, child.buffer = child.buffer.split(b"\n")
        for line in lines:
            if line:
                self._handle(child, orjson.loads(line))

    def _handle(self, child: Child, message: dict) -> None:
        event = message["event"]
        if event == "sync":
            self._done(child, message["done"])
            for item in message["claims"]:
                if item["key"] in child.done_early:
                    child.done_early.discard(item["key"])
                    continue
                # Renewal needs only the token (see Claim): no payload crosses the pipe.
                child.claims[item["key"]] = (Claim(None, b"", item["token"], child.worker_id, item["lease_until"]),
                                             {"job_id": item["job_id"], "job": item["job"], "queue": item["queue"],
                                              "started_at": time.time()})
        elif event == "started":
            child.worker_id = message["worker_id"]
            self.beat_now = True  # register it at once, for the admin and jobs_status
            # Its signal handlers are installed now: repeat a stop or quiet signal that may
            # have reached it before (or been sent just before it was started).
            if self.stopping_since is not None:
                os.kill(child.proc.pid, signal.SIGTERM)
            elif self.quiet:
                os.kill(child.proc.pid, signal.SIGTSTP)
        elif event == "stopped":
            child.stopped = True

    @staticmethod
    def _done(child: Child, keys) -> None:
        for key in keys:
            if child.claims.pop(key, None) is None and len(child.done_early) < 100_000:
                child.done_early.add(key)

    # --- main loop ---------------------------------------------------------
    def run(self) -> int:
        for slot in range(self.processes):
            self._spawn(slot)
        next_beat = 0.0
        while self.children or self.respawn_at:
            for key, _ in self.selector.select(timeout=0.2):
                self._drain(key.data)
            if self.beat_now or time.monotonic() >= next_beat:
                self.beat_now = False
                self._heartbeat()
                next_beat = time.monotonic() + max(0.5, self.lease / 4)
            self._check_children()
            if self.stopping_since is not None:
                self._enforce_stop_deadline()
        logger.info("All workers stopped")
        return 0

    def _heartbeat(self) -> None:
        for child in list(self.children.values()):
            if not child.worker_id:
                continue
            claims = [claim for claim, _ in child.claims.values()]
            info = WorkerInfo(child.worker_id, socket.gethostname(), child.proc.pid, self.queues,
                              self.concurrency, child.started_at, busy=[meta for _, meta in child.claims.values()])
            try:
                self.adapter.heartbeat(info, claims)
            except Exception as exc:  # the adapter's message says what failed: renewal, registry or both
                ends = ""
                if claims:
                    left = max(0.0, min(claim.lease_until for claim in claims) - self.adapter.clock())
                    ends = f"; its leases ({len(claims)} job(s)) end in {left:.1f} s"
                logger.error("Heartbeat of worker %s failed (%s: %s)%s; retrying", child.worker_id,
                             type(exc).__name__, exc, ends)
                close_old_connections()  # a connection broken by a database restart is replaced

    def _check_children(self) -> None:
        for slot, child in list(self.children.items()):
            code = child.proc.poll()
            if code is None:
                continue
            self._reap(child)
            del self.children[slot]
            if self.stopping_since is None:
                delay = self._restart_delay()
                logger.error("Worker pid %d exited with code %s; starting a new one%s", child.proc.pid, code,
                             f" in {delay:.1f} s" if delay else "")
                self.respawn_at[slot] = time.monotonic() + delay
        if self.stopping_since is not None:
            self.respawn_at.clear()
        for slot, at in list(self.respawn_at.items()):
            if time.monotonic() >= at:
                del self.respawn_at[slot]
                self._spawn(slot)

    def _restart_delay(self) -> float:
        """A crash loop slows down but never stops trying; the main loop goes on meanwhile
        (it renews the other workers' leases: a sleep here once let them expire)."""
        now = time.monotonic()
        self.restarts = [t for t in self.restarts if now - t < 60] + [now]
        if len(self.restarts) > 5 * self.processes:
            return min(10.0, 0.5 * len(self.restarts))
        return 0.0

    def _enforce_stop_deadline(self) -> None:
        if time.monotonic() - self.stopping_since > self.shutdown_timeout + 15:
            for child in self.children.values():
                if child.proc.poll() is None:
                    logger.error("Worker pid %d did not stop in time; killing it", child.proc.pid)
                    child.proc.kill()


def child_argv(options: dict) -> list[str]:
    """How to start one worker process: this interpreter, this project, the same settings."""
    argv = [sys.executable, "-m", "django", "runjobs", "--child"]
    for queue in options["queue"] or []:
        argv += ["--queue", queue]
    argv += ["--concurrency", str(options["concurrency"]), "--shutdown-timeout", str(options["shutdown_timeout"]),
             "--async-concurrency", str(options.get("async_concurrency") or conf.get("ASYNC_CONCURRENCY")),
             "--verbosity", str(options["verbosity"])]
    if options.get("pythonpath"):  # (--settings reaches the children through DJANGO_SETTINGS_MODULE)
        argv += ["--pythonpath", os.path.abspath(options["pythonpath"])]
    if options.get("traceback"):
        argv.append("--traceback")
    return argv


def child_env() -> dict:
    """The project's import path, so ``python -m django`` finds the settings module."""
    env = dict(os.environ)
    paths = [os.getcwd()]
    script = os.path.abspath(sys.argv[0])
    if os.path.isfile(script) and os.path.basename(script) != "__main__.py":  # manage.py's folder, not a package's
        paths.append(os.path.dirname(script))
    env["PYTHONPATH"] = os.pathsep.join([*paths, *filter(None, [env.get("PYTHONPATH")])])
    return env


def _exit_text(code: int | None) -> str:
    if code is not None and code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"
