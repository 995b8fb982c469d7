-- Acknowledge finished jobs, then claim up to `limit` ready jobs: one round trip
-- per worker batch.
-- Acknowledge: forget each finished job whose lease token still matches (a job
-- whose lease expired and now runs elsewhere is left alone); count them processed.
-- Claim: queues in the order given, highest priority first, FIFO within a priority;
-- skip paused queues. Each claimed job gets a lease (running: score = lease expiry)
-- fenced by `token`.
-- ARGV: prefix, lease_until, token, limit, day, n, then n pairs (job_id, token), then queue...
local p, lease_until, token, limit, day = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4]), ARGV[5]
local acks_end = 6 + 2 * tonumber(ARGV[6])
local done = 0
for i = 7, acks_end, 2 do
  local id = ARGV[i]
  if redis.call('HGET', p .. ':leases', id) == ARGV[i + 1] then
    redis.call('HDEL', p .. ':leases', id)
    redis.call('ZREM', p .. ':running', id)
    redis.call('HDEL', p .. ':payloads', id)
    redis.call('HDEL', p .. ':meta', id)
    done = done + 1
  end
end
if done > 0 then
  redis.call('INCRBY', p .. ':stat:processed', done)
  redis.call('INCRBY', p .. ':stat:processed:' .. day, done)
  redis.call('EXPIRE', p .. ':stat:processed:' .. day, 34560000)
end
local out, got = {}, 0
for qi = acks_end + 1, #ARGV do
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
