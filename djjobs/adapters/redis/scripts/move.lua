#!lua flags=allow-oom
-- Move one claimed job out of running, fenced by its lease token:
-- target 'retry' | 'scheduled' | 'dead' (score = run_at / failed_at) or 'front'
-- (back to the head of its queue). A new payload (and queue/priority) replaces the old.
-- ARGV: prefix, job_id, token, target, score, payload or '', queue, priority, count ('failed' or ''), day,
-- then optional: expired_before (lease recovery: the lease must still end before it, so a
-- renewal that landed after recovery read the expired leases wins; '' for none), and an
-- error (JSON) stored in P:errors beside a payload kept as it was (target 'dead' only), and
-- the job's uniqueness key, let go when it goes to the dead set (lib/unique_release.lua), and
-- '1' for a concurrency-limited job: any target but 'front' lets its slot go (lib/slots.lua), and
-- now. Target 'cancelled' (score: now) is a run stopped for its cancel request; a job with a
-- request in P:cancel bound for 'retry', 'scheduled' or 'front' goes there instead (cancellation.py),
-- counted neither failed nor processed; the script returns 2 then (the caller caps P:cancelled).
-- Target 'discarded' forgets the job, counted processed. 'dead', 'cancelled' and 'discarded'
-- settle the jobs waiting for it as a prerequisite that ended badly (lib/waits.lua).
local p, id, token, target, score = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local payload, queue, prio, count, day = ARGV[6], ARGV[7], ARGV[8], ARGV[9], ARGV[10]
if redis.call('HGET', p .. ':leases', id) ~= token then return 0 end
if ARGV[11] and ARGV[11] ~= '' and tonumber(redis.call('ZSCORE', p .. ':running', id) or '0') >= tonumber(ARGV[11]) then
  return 0
end
redis.call('HDEL', p .. ':leases', id)
redis.call('ZREM', p .. ':running', id)
local redirected = false
if redis.call('HDEL', p .. ':cancel', id) == 1 and target ~= 'dead' and target ~= 'discarded' then
  target, score, count, redirected = 'cancelled', ARGV[15], '', true  -- cancelled: not counted failed
end
if target == 'discarded' then  -- forgotten, as an acknowledgement forgets a success
  redis.call('HDEL', p .. ':payloads', id)
  redis.call('HDEL', p .. ':meta', id)
  if ARGV[13] and ARGV[13] ~= '' then unique_release(p .. ':unique', ARGV[13], id) end
  if ARGV[14] == '1' then let_go(p, id, true) end
else
  if payload ~= '' then redis.call('HSET', p .. ':payloads', id, payload) end
  if queue == '' then
    prio, queue = place(p, id)
    prio, queue = prio or '0', queue or 'default'
  end
  if target ~= 'front' or redis.call('HEXISTS', p .. ':meta', id) == 1 then
    redis.call('HSET', p .. ':meta', id, prio .. '|' .. queue)  -- read by promotion and the admin
  end
  if target == 'front' then
    redis.call('LPUSH', p .. ':q:' .. queue .. ':' .. prio, id)
    redis.call('ZADD', p .. ':prios:' .. queue, -tonumber(prio), prio)
    redis.call('SADD', p .. ':queues', queue)
    if redis.call('EXISTS', p .. ':waiting') == 1 then redis.call('PUBLISH', p .. ':wake', '1') end
  else
    redis.call('ZADD', p .. ':' .. target, score, id)
    if target == 'dead' and ARGV[12] and ARGV[12] ~= '' then redis.call('HSET', p .. ':errors', id, ARGV[12]) end
    if target == 'dead' and ARGV[13] and ARGV[13] ~= '' then unique_release(p .. ':unique', ARGV[13], id) end
    if ARGV[14] == '1' then let_go(p, id, false) end
  end
end
if target == 'dead' or target == 'cancelled' or target == 'discarded' then parent_ended(p, id, target, ARGV[15]) end
if count ~= '' then
  redis.call('INCRBY', p .. ':stat:' .. count, 1)
  redis.call('INCRBY', p .. ':stat:' .. count .. ':' .. day, 1)
  redis.call('EXPIRE', p .. ':stat:' .. count .. ':' .. day, 34560000)
end
return redirected and 2 or 1
