-- Store a batch of jobs for ONE queue and priority: payloads and meta, then ready
-- (appended to the queue's list in order) or scheduled (sorted set by run_at).
-- ARGV: prefix, queue, priority, scheduled ('1' or ''), then per job: job_id, run_at or '', payload.
local p, queue, prio, scheduled = ARGV[1], ARGV[2], ARGV[3], ARGV[4] == '1'
local payloads, metas, ids, zs = {}, {}, {}, {}
local meta = prio .. '|' .. queue
for i = 5, #ARGV, 3 do
  local id = ARGV[i]
  payloads[#payloads + 1] = id
  payloads[#payloads + 1] = ARGV[i + 2]
  metas[#metas + 1] = id
  metas[#metas + 1] = meta
  if scheduled then
    zs[#zs + 1] = ARGV[i + 1]
    zs[#zs + 1] = id
  else
    ids[#ids + 1] = id
  end
end
redis.call('HSET', p .. ':payloads', unpack(payloads))
redis.call('HSET', p .. ':meta', unpack(metas))
redis.call('SADD', p .. ':queues', queue)
if scheduled then
  redis.call('ZADD', p .. ':scheduled', unpack(zs))
else
  redis.call('RPUSH', p .. ':q:' .. queue .. ':' .. prio, unpack(ids))
  redis.call('ZADD', p .. ':prios:' .. queue, -tonumber(prio), prio)
  if redis.call('EXISTS', p .. ':waiting') == 1 then redis.call('PUBLISH', p .. ':wake', '1') end
end
return #ids + #zs / 2
