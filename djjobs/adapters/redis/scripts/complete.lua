-- Forget finished jobs whose lease `token` still matches; count them processed.
-- ARGV: prefix, day, then pairs (job_id, token).
local p, day = ARGV[1], ARGV[2]
local n = 0
for i = 3, #ARGV, 2 do
  local id = ARGV[i]
  if redis.call('HGET', p .. ':leases', id) == ARGV[i + 1] then
    redis.call('HDEL', p .. ':leases', id)
    redis.call('ZREM', p .. ':running', id)
    redis.call('HDEL', p .. ':payloads', id)
    redis.call('HDEL', p .. ':meta', id)
    n = n + 1
  end
end
if n > 0 then
  redis.call('INCRBY', p .. ':stat:processed', n)
  redis.call('INCRBY', p .. ':stat:processed:' .. day, n)
  redis.call('EXPIRE', p .. ':stat:processed:' .. day, 34560000)
end
return n
