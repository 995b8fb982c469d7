#!lua flags=allow-oom
-- Cap the dead set (or the cancelled one): drop jobs older than `cutoff`, then the oldest beyond
-- `max` (at most 1,000 a call). ARGV: prefix, cutoff, max, then 'cancelled' for the cancelled set.
local p, cutoff, max = ARGV[1], ARGV[2], tonumber(ARGV[3])
local set = p .. ':' .. (ARGV[4] == 'cancelled' and 'cancelled' or 'dead')
local doomed = redis.call('ZRANGEBYSCORE', set, '-inf', '(' .. cutoff, 'LIMIT', 0, 1000)
local excess = redis.call('ZCARD', set) - #doomed - max
if excess > 0 then
  for _, id in ipairs(redis.call('ZRANGE', set, #doomed, #doomed + math.min(excess, 1000) - 1)) do
    doomed[#doomed + 1] = id
  end
end
for _, id in ipairs(doomed) do
  redis.call('ZREM', set, id)
  redis.call('HDEL', p .. ':payloads', id)
  redis.call('HDEL', p .. ':meta', id)
  redis.call('HDEL', p .. ':errors', id)
  redis.call('HDEL', p .. ':cjobs', id)
end
return #doomed
