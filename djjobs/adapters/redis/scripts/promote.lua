#!lua flags=allow-oom
-- Move due scheduled and retry jobs to the back of their queues (each once: ZREM decides).
-- ARGV: prefix, now, limit.
local p, now, limit = ARGV[1], ARGV[2], tonumber(ARGV[3])
local n, known = 0, {}
for _, set in ipairs({'scheduled', 'retry'}) do
  for _, id in ipairs(redis.call('ZRANGEBYSCORE', p .. ':' .. set, '-inf', now, 'LIMIT', 0, limit)) do
    if redis.call('ZREM', p .. ':' .. set, id) == 1 then
      local prio, queue = place(p, id)
      if prio then  -- gone otherwise
        redis.call('RPUSH', p .. ':q:' .. queue .. ':' .. prio, id)
        redis.call('ZADD', p .. ':prios:' .. queue, -tonumber(prio), prio)
        if not known[queue] then redis.call('SADD', p .. ':queues', queue) end
        known[queue] = true
        n = n + 1
      end
    end
  end
end
if n > 0 and redis.call('EXISTS', p .. ':waiting') == 1 then redis.call('PUBLISH', p .. ':wake', '1') end
return n
