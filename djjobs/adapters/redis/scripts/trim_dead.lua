#!lua flags=allow-oom
-- Cap the dead set: drop jobs older than `cutoff`, then the oldest beyond `max` (at most 1,000 a call).
-- ARGV: prefix, cutoff, max.
local p, cutoff, max = ARGV[1], ARGV[2], tonumber(ARGV[3])
local doomed = redis.call('ZRANGEBYSCORE', p .. ':dead', '-inf', '(' .. cutoff, 'LIMIT', 0, 1000)
local excess = redis.call('ZCARD', p .. ':dead') - #doomed - max
if excess > 0 then
  for _, id in ipairs(redis.call('ZRANGE', p .. ':dead', #doomed, #doomed + math.min(excess, 1000) - 1)) do
    doomed[#doomed + 1] = id
  end
end
for _, id in ipairs(doomed) do
  redis.call('ZREM', p .. ':dead', id)
  redis.call('HDEL', p .. ':payloads', id)
  redis.call('HDEL', p .. ':meta', id)
  redis.call('HDEL', p .. ':errors', id)
  redis.call('HDEL', p .. ':cjobs', id)
end
return #doomed
