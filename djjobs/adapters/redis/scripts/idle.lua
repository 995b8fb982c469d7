#!lua flags=allow-oom
-- An idle fetcher registers so that enqueues hand it jobs directly (enqueue.lua), and
-- deregisters when it stops waiting.
-- ARGV: prefix, 'on' or 'off', worker_id, token, lease_until, nq, nq queues, then the ids
-- this fetcher received on its channel since the last call ('on', at least once a second,
-- forgets them, so a registration that lives through many hand-offs stays small).
-- 'on': if a queue has ready jobs, register nothing and return 1 (claim them instead);
-- else enter the worker in each queue's idle list, store its token and the lease its
-- jobs get (both expire after 2 s unless refreshed: a dead fetcher is skipped), announce
-- a waiter for the broadcast wake-up, and return 0.
-- 'off': leave the idle lists and return (id, payload, lease_until) of every job handed to this
-- registration that the fetcher has not received yet, so none waits for its lease.
local p, mode, wid, token, lease_until = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local nq = tonumber(ARGV[6])
local reg, handed = p .. ':idler:' .. wid, p .. ':handed:' .. wid
if mode == 'on' then
  for i = 7 + nq, #ARGV, 1000 do redis.call('SREM', handed, unpack(ARGV, i, math.min(i + 999, #ARGV))) end
  for i = 7, 6 + nq do
    if redis.call('EXISTS', p .. ':prios:' .. ARGV[i]) == 1 and redis.call('SISMEMBER', p .. ':paused', ARGV[i]) == 0 then
      return 1
    end
  end
  for i = 7, 6 + nq do
    redis.call('LREM', p .. ':idle:' .. ARGV[i], 0, wid)
    redis.call('LPUSH', p .. ':idle:' .. ARGV[i], wid)
  end
  redis.call('SET', reg, token .. '|' .. lease_until, 'PX', 2000)
  redis.call('SET', p .. ':waiting', '1', 'PX', 2000)
  return 0
end
for i = 7, 6 + nq do
  redis.call('LREM', p .. ':idle:' .. ARGV[i], 0, wid)
end
redis.call('DEL', reg)
local known = {}
for i = 7 + nq, #ARGV do known[ARGV[i]] = true end
local out = {}
for _, id in ipairs(redis.call('SMEMBERS', handed)) do
  if not known[id] and redis.call('HGET', p .. ':leases', id) == token then
    local payload = redis.call('HGET', p .. ':payloads', id)
    if payload then
      out[#out + 1] = id
      out[#out + 1] = payload
      out[#out + 1] = redis.call('ZSCORE', p .. ':running', id)
    end
  end
end
redis.call('DEL', handed)
return out
