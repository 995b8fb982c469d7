-- Claim up to `limit` ready jobs, queues in the order given, highest priority first,
-- FIFO within a priority; skip paused queues. Each claimed job gets a lease
-- (running: score = lease expiry) fenced by `token`.
-- ARGV: prefix, lease_until, token, limit, queue...
local p, lease_until, token, limit = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
local out, got = {}, 0
for qi = 5, #ARGV do
  if got >= limit then break end
  local queue = ARGV[qi]
  if redis.call('SISMEMBER', p .. ':paused', queue) == 0 then
    for _, prio in ipairs(redis.call('ZRANGE', p .. ':prios:' .. queue, 0, -1)) do
      local key = p .. ':q:' .. queue .. ':' .. prio
      while got < limit do
        local ids = redis.call('LPOP', key, limit - got)
        if not ids then break end
        for _, id in ipairs(ids) do
          local payload = redis.call('HGET', p .. ':payloads', id)
          if payload then
            redis.call('ZADD', p .. ':running', lease_until, id)
            redis.call('HSET', p .. ':leases', id, token)
            got = got + 1
            out[#out + 1] = id
            out[#out + 1] = payload
          end
        end
      end
      if redis.call('LLEN', key) == 0 then redis.call('ZREM', p .. ':prios:' .. queue, prio) end
      if got >= limit then break end
    end
  end
end
return out
