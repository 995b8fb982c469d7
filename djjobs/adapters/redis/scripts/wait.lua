#!lua flags=allow-oom
-- Store ONE job with prerequisites (lib/waits.lua has the model): waiting while one of them
-- has not ended, registered with each in this same step (a prerequisite's end runs in a
-- script too: it either ran before, and the job sees it ended, or after, and sees the job).
-- A prerequisite stored dead or cancelled ended badly; one not stored ended well (finished
-- and forgotten, or never stored). ARGV: prefix, now, job_id, payload, queue, priority,
-- run_at or '', policy, concurrency key or '', its limit, batch id or '', then the
-- prerequisites' ids. A job of a batch counts pending in it from this step (lib/batches.lua),
-- and is settled at once if its policy ends it here; a batch complete or unknown refuses
-- the job before any write: 'batch'.
-- Returns 'waiting', 'ready', 'scheduled', 'dead' or 'discarded'; 0 when the job is stored
-- already (the same call sent again after its reply was lost).
local p, now, id, payload, queue, prio, run_at, policy = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6],
  ARGV[7], ARGV[8]
if redis.call('HEXISTS', p .. ':payloads', id) == 1 then return 0 end
local batch = ARGV[11]
if batch ~= '' and not batch_open(p, batch) then return 'batch' end
local pending, bad, how = {}, nil, nil
for i = 12, #ARGV do
  local parent = ARGV[i]
  if redis.call('HEXISTS', p .. ':payloads', parent) == 1 then
    if redis.call('ZSCORE', p .. ':dead', parent) then
      if not bad then bad, how = parent, 'dead' end
    elseif redis.call('ZSCORE', p .. ':cancelled', parent) then
      if not bad then bad, how = parent, 'cancelled' end
    else
      pending[#pending + 1] = parent
    end
  end
end
redis.call('HSET', p .. ':payloads', id, payload)
redis.call('HSET', p .. ':meta', id, prio .. '|' .. queue)
redis.call('SADD', p .. ':queues', queue)
if ARGV[9] ~= '' then redis.call('HSET', p .. ':cjobs', id, ARGV[10] .. '|a|' .. ARGV[9]) end
if batch ~= '' then batch_join(p, batch, {id}) end
if bad and policy ~= 'run' then
  local ended = end_waiting(p, id, policy, bad, how, now)
  if batch ~= '' then batch_ended(p, id, ended, now) end
  return ended
end
if #pending == 0 then
  wait_over(p, id, run_at, now)
  return (run_at ~= '' and tonumber(run_at) > tonumber(now)) and 'scheduled' or 'ready'
end
redis.call('ZADD', p .. ':waits', now, id)
redis.call('HSET', p .. ':wjobs', id, policy .. '|' .. run_at)
redis.call('SADD', p .. ':pending:' .. id, unpack(pending))
for _, parent in ipairs(pending) do
  local before = redis.call('HGET', p .. ':parents', parent)
  redis.call('HSET', p .. ':parents', parent, before and (before .. ' ' .. id) or id)
end
return 'waiting'
