"""The Redis adapter's batch calls (djjobs/batches.py; the contract in ``adapters/base.py``;
the data model in scripts/lib/batches.lua). Jobs join a batch inside enqueue.lua and
wait.lua, and are settled by the scripts that end them; these calls open, close, read,
list and repair batches."""
from __future__ import annotations

from typing import Iterable

import orjson

from ...batch_status import BatchStatus
from ...envelope import Envelope
from ..base import BatchPage, batch_refused

REPAIR_SCAN = 500  # P:bjobs entries checked per repair (an HSCAN cursor carries on from there)
REPAIR_OPEN = 200  # oldest open batches checked per repair
REPAIR_PRUNE = 100  # oldest batches looked at for pruning per repair


def _int(value) -> int:
    return int(value) if value is not None else 0


class RedisBatches:
    """Mixed into RedisAdapter (it uses ``run``, ``client``, ``keys``, ``clock``, ``setting``)."""

    _repair_cursor = 0

    def _batch_key(self, batch_id: str) -> str:
        return f"{self.keys.prefix}:batch:{batch_id}"

    def open_batch(self, status: BatchStatus, callbacks: dict[str, Envelope]) -> None:
        rows = [v for event, env in callbacks.items() for v in (event, f"{env.priority}|{env.queue}", env.encode())]
        ids = orjson.dumps({event: env.job_id for event, env in callbacks.items()})
        p = self.keys.prefix
        self.run("batch_open", status.id, repr(status.created_ts), status.description,
                 orjson.dumps(status.properties), ids, *rows,
                 keys=(self._batch_key(status.id), f"{p}:batches", f"{p}:bopen"))

    def close_batch(self, batch_id: str) -> None:
        self.run("batch_close", batch_id, repr(self.clock()))

    def _batches_open(self, batch_ids: Iterable[str]) -> None:
        """Refuse, before anything is sent, an enqueue into a batch complete or unknown (the
        scripts refuse it too, atomically: this makes a bulk of several calls all or nothing)."""
        batch_ids = sorted(batch_ids)
        with self.client.pipeline(transaction=False) as pipe:
            for batch_id in batch_ids:
                pipe.hmget(self._batch_key(batch_id), "c", "e")
            found = pipe.execute()
        for batch_id, (created, completed) in zip(batch_ids, found):
            if created is None or completed is not None:
                raise batch_refused(batch_id)

    def batch_status(self, batch_id: str) -> BatchStatus | None:
        return self._statuses([batch_id])[0]

    def _statuses(self, batch_ids: list[str]) -> list[BatchStatus | None]:
        fields = ("d", "t", "n", "s", "x", "q", "k", "o", "c", "e", "p", "ids")
        with self.client.pipeline(transaction=False) as pipe:
            for batch_id in batch_ids:
                pipe.hmget(self._batch_key(batch_id), *fields)
            rows = pipe.execute()
        out: list[BatchStatus | None] = []
        for batch_id, v in zip(batch_ids, rows):
            if v[8] is None:
                out.append(None)
                continue
            out.append(BatchStatus(
                id=batch_id, description=(v[0] or b"").decode(), total=_int(v[1]), pending=_int(v[2]),
                succeeded=_int(v[3]), dead=_int(v[4]), discarded=_int(v[5]), cancelled=_int(v[6]),
                closed=v[7] == b"1", created_ts=float(v[8]), completed_ts=float(v[9]) if v[9] is not None else None,
                properties=orjson.loads(v[10] or b"{}"), callbacks=orjson.loads(v[11] or b"{}")))
        return out

    def batches(self, *, page: int = 1, per_page: int = 25) -> BatchPage:
        start = (page - 1) * per_page
        with self.client.pipeline(transaction=False) as pipe:
            pipe.zrevrange(self.keys.prefix + ":batches", start, start + per_page - 1)
            pipe.zcard(self.keys.prefix + ":batches")
            ids, total = pipe.execute()
        statuses = self._statuses([i.decode() for i in ids]) if ids else []
        return BatchPage([s for s in statuses if s is not None], total, page, per_page)

    def batch_failures(self, batch_id: str, limit: int = 100) -> list[str]:
        ids = [i.decode() for i in self.client.zrevrange(f"{self.keys.prefix}:bfail:{batch_id}", 0, max(0, limit * 2))]
        if not ids:
            return []
        stored = self.client.hmget(self.keys.payloads, ids)
        return [job_id for job_id, raw in zip(ids, stored) if raw is not None][:limit]

    def repair_batches(self) -> int:
        p = self.keys.prefix
        now = self.clock()
        cursor, found = self.client.hscan(f"{p}:bjobs", self._repair_cursor, count=REPAIR_SCAN)
        self._repair_cursor = cursor
        jobs = [j.decode() for j in found]
        opened = [b.decode() for b in self.client.zrange(f"{p}:bopen", 0, REPAIR_OPEN - 1)]
        cutoff = now - self.setting("BATCH_RETENTION_SECONDS")
        old = [b.decode() for b in self.client.zrangebyscore(f"{p}:bdone", "-inf", cutoff, start=0, num=REPAIR_PRUNE)]
        if not jobs and not opened and not old:
            return 0
        return int(self.run("batch_repair", repr(now), repr(cutoff), len(jobs), *jobs, len(opened), *opened, *old))
