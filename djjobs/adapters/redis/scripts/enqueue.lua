-- Store jobs: payload and meta, then ready (queue list) or scheduled (sorted set).
-- ARGV: prefix, then groups of (job_id, queue, priority, run_at or "", payload).
local p = ARGV[1]
local ready = false
for i = 2, #ARGV, 5 do
  local id, queue, prio, run_at = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
  redis.call('HSET', p .. ':payloads', id, ARGV[i + 4])
  redis.call('HSET', p .. ':meta', id, prio .. '|' .. queue)
  redis.call('SADD', p .. ':queues', queue)
  if run_at ~= '' then
    redis.call('ZADD', p .. ':scheduled', run_at, id)
  else
    redis.call('RPUSH', p .. ':q:' .. queue .. ':' .. prio, id)
    redis.call('ZADD', p .. ':prios:' .. queue, -tonumber(prio), prio)
    ready = true
  end
end
if ready and redis.call('EXISTS', p .. ':waiting') == 1 then
  redis.call('PUBLISH', p .. ':wake', '1')
end
return 1
