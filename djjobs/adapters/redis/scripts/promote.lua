-- Move due scheduled and retry jobs to the back of their queues (each once: ZREM decides).
-- ARGV: prefix, now, limit.
local p, now, limit = ARGV[1], ARGV[2], tonumber(ARGV[3])
local n = 0
for _, set in ipairs({'scheduled', 'retry'}) do
  for _, id in ipairs(redis.call('ZRANGEBYSCORE', p .. ':' .. set, '-inf', now, 'LIMIT', 0, limit)) do
    if redis.call('ZREM', p .. ':' .. set, id) == 1 then
      local meta = redis.call('HGET', p .. ':meta', id)
      if meta then
        local sep = string.find(meta, '|', 1, true)
        local prio, queue = string.sub(meta, 1, sep - 1), string.sub(meta, sep + 1)
        redis.call('RPUSH', p .. ':q:' .. queue .. ':' .. prio, id)
        redis.call('ZADD', p .. ':prios:' .. queue, -tonumber(prio), prio)
        n = n + 1
      end
    end
  end
end
if n > 0 and redis.call('EXISTS', p .. ':waiting') == 1 then redis.call('PUBLISH', p .. ':wake', '1') end
return n
