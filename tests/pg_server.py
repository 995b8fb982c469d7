"""A throwaway PostgreSQL server for the test-suite: initdb in a temp dir, a free
127.0.0.1 port, run as an unprivileged user when we are root (PostgreSQL refuses
to run as root). Started once per test run by tests/pg_plugin.py; its address
reaches the settings through DJJOBS_TEST_PG (JSON)."""
from __future__ import annotations

import glob
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time


def find_bin(name: str) -> str | None:
    found = shutil.which(name)
    if found and "postgresql" in os.path.realpath(found):
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)
    return candidates[0] if candidates else found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PostgresServer:
    def __init__(self):
        self.initdb, self.postgres = find_bin("initdb"), find_bin("postgres")
        if not (self.initdb and self.postgres):
            raise FileNotFoundError("PostgreSQL server binaries (initdb, postgres) not found; "
                                    "install them with: apt-get install postgresql")
        self.dir = tempfile.mkdtemp(prefix="djjobs-pg-")
        self.data = os.path.join(self.dir, "data")
        self.port = free_port()
        self.proc: subprocess.Popen | None = None
        self.user = "nobody" if os.geteuid() == 0 else None

    def _run_as(self) -> dict:
        if self.user is None:
            return {}
        import pwd
        entry = pwd.getpwnam(self.user)
        os.chown(self.dir, entry.pw_uid, entry.pw_gid)
        return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}

    def start(self) -> "PostgresServer":
        as_user = self._run_as()
        if not os.path.exists(self.data):
            subprocess.run([self.initdb, "-D", self.data, "-A", "trust", "-U", "postgres", "-E", "UTF8",
                            "--no-sync"], check=True, capture_output=True, cwd=self.dir, **as_user)
        self.proc = subprocess.Popen(
            [self.postgres, "-D", self.data, "-p", str(self.port), "-k", self.dir, "-c", "listen_addresses=127.0.0.1",
             "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
             "-c", "max_connections=200"],
            stdout=open(os.path.join(self.dir, "log"), "ab"), stderr=subprocess.STDOUT, cwd=self.dir,
            start_new_session=True, **as_user)
        self.wait_ready()
        return self

    def wait_ready(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"PostgreSQL exited at start-up; log: {self.log()[-2000:]}")
            try:
                import psycopg
                psycopg.connect(host="127.0.0.1", port=self.port, user="postgres", dbname="postgres",
                                connect_timeout=2).close()
                return
            except Exception:
                time.sleep(0.1)
        raise RuntimeError(f"PostgreSQL did not accept connections within {timeout} s; log: {self.log()[-2000:]}")

    def stop(self, mode: int = signal.SIGINT, timeout: float = 30) -> None:
        """SIGINT = fast shutdown (clean); the process is ours, stopped by PID."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(mode)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)

    def restart(self) -> None:
        self.stop()
        self.start()

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def log(self) -> str:
        try:
            with open(os.path.join(self.dir, "log"), errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def settings(self) -> dict:
        return {"ENGINE": "django.db.backends.postgresql", "HOST": "127.0.0.1", "PORT": str(self.port),
                "USER": "postgres", "NAME": "djjobs", "TEST": {"NAME": "test_djjobs"}}
