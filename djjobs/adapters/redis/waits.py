"""The Redis adapter's enqueue of jobs with prerequisites (djjobs/prerequisites.py): one
wait.lua call each, pipelined, after the batch's other jobs (a prerequisite enqueued in the
same batch is stored first). The steps that end a job settle its dependants in their own
scripts (scripts/lib/waits.lua)."""
from __future__ import annotations

from typing import Sequence

import redis

from ...envelope import Envelope
from ...errors import EnqueueError
from ...prerequisites import of
from ..base import batch_refused, concurrency_slot


class RedisPrerequisites:
    """Mixed into RedisAdapter (it uses ``client``, ``scripts``, ``keys``, ``url``, ``clock``)."""

    def _store_waiting(self, items: Sequence[tuple[Envelope, bytes]]) -> None:
        now = repr(self.clock())
        try:
            with self.client.pipeline(transaction=False) as pipe:
                for env, raw in items:
                    ids, policy = of(env.meta) or ([], "dead")
                    slot = concurrency_slot(env)
                    self.scripts["wait"](args=[self.keys.prefix, now, env.job_id, raw, env.queue, str(env.priority),
                                               repr(env.run_at) if env.run_at is not None else "", policy,
                                               *(slot if slot else ("", 0)), env.meta.get("batch", ""), *ids],
                                         client=pipe)
                results = pipe.execute(raise_on_error=False)
        except redis.RedisError as exc:
            raise EnqueueError(f"Redis at {self.url} failed while storing {len(items):,} job(s) with prerequisites "
                               f"({type(exc).__name__}: {exc}); whether they were stored is unknown: check by "
                               "job_id.", not_stored=()) from exc
        refused = [env for (env, _), r in zip(items, results) if r == b"batch"]
        if refused:
            error = batch_refused(refused[0].meta["batch"])
            error.stored = [env.job_id for (env, _), r in zip(items, results) if r != b"batch"
                            and not isinstance(r, Exception)]
            error.not_stored = [env.job_id for (env, _), r in zip(items, results) if r == b"batch"
                                or isinstance(r, Exception)]
            raise error
        failed = [env.job_id for (env, _), r in zip(items, results) if isinstance(r, Exception)]
        if failed:
            cause = next(r for r in results if isinstance(r, Exception))
            stored = [env.job_id for (env, _), r in zip(items, results) if not isinstance(r, Exception)]
            raise EnqueueError(f"Redis at {self.url} refused {len(failed):,} of {len(items):,} job(s) with "
                               f"prerequisites ({type(cause).__name__}: {cause}); EnqueueError.not_stored lists them.",
                               stored=stored, not_stored=failed) from cause
