#!lua flags=allow-oom
-- Rate limits (djjobs/ratelimits.py): an exact sliding window of starts per key. Every key
-- it touches is in KEYS: P:rate:<key> (ZSET: one member per start, scored by its time) and
-- P:rates (HASH: key -> "limit|period", read by the admin's listing).
-- ARGV: prefix (unused), key, limit, period, now, member. Counts one start if fewer than
-- `limit` started in (now - period, now] and returns '0'; else counts nothing and returns
-- the seconds until enough starts have left the window for one more.
-- Allowed at maxmemory: a refused call would fail the job's start instead of delaying it,
-- and the window holds at most `limit` members and expires with its period.
local key, limit, period, now = ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - period)
redis.call('HSET', KEYS[2], key, limit .. '|' .. period)
local used = redis.call('ZCARD', KEYS[1])
if used < limit then
  redis.call('ZADD', KEYS[1], now, ARGV[6])
  redis.call('PEXPIRE', KEYS[1], math.ceil(period * 1000) + 1000)
  return '0'
end
local leaves = redis.call('ZRANGE', KEYS[1], used - limit, used - limit, 'WITHSCORES')
return tostring(tonumber(leaves[2]) + period - now)
