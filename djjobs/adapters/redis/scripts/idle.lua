#!lua flags=allow-oom
-- An idle fetcher registers so that enqueues hand it jobs directly (enqueue.lua), and
-- deregisters when it stops waiting.
-- ARGV: prefix, 'on' or 'off', worker_id, token, lease_until, asked, nq, nq queues, then the
-- ids this fetcher received on its channel since it last reported them (here or in
-- fetch.lua; 'on', at least once a second, forgets them, so a registration that lives
-- through many hand-offs stays small).
-- 'on': if a queue has ready jobs, register nothing and return 1 (claim them instead);
-- else store its token, the lease its jobs get and how many jobs it asked for (`asked`:
-- the fetch's limit; all three expire after 2 s unless refreshed: a dead fetcher is
-- skipped), enter the worker in each queue's idle list if it may take a job (asked more
-- than it has been handed and not received: enqueue.lua hands it no more than that),
-- announce a waiter for the broadcast wake-up, and return 0. Sent twice, it does the same.
-- (P:handed:<worker> is that count: enqueue.lua adds, the fetcher's reports remove.)
-- 'off': leave the idle lists and return (id, payload, lease_until) of every job handed to this
-- registration that the fetcher has not received yet, so none waits for its lease.
local p, mode, wid, token, lease_until, asked = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6]
local nq = tonumber(ARGV[7])
local reg, handed = p .. ':idler:' .. wid, p .. ':handed:' .. wid
if mode == 'on' then
  for i = 8 + nq, #ARGV, 1000 do redis.call('SREM', handed, unpack(ARGV, i, math.min(i + 999, #ARGV))) end
  for i = 8, 7 + nq do
    if redis.call('EXISTS', p .. ':prios:' .. ARGV[i]) == 1 and redis.call('SISMEMBER', p .. ':paused', ARGV[i]) == 0 then
      return 1
    end
  end
  -- Entries not leased with this token are not this fetcher's to receive: an earlier
  -- registration's whose deregistration failed, or a job whose message was lost and whose
  -- lease ran out (recovered since). Counted, they would shrink what it may take for good.
  for _, id in ipairs(redis.call('SMEMBERS', handed)) do
    if redis.call('HGET', p .. ':leases', id) ~= token then redis.call('SREM', handed, id) end
  end
  local room = tonumber(asked) - redis.call('SCARD', handed)
  for i = 8, 7 + nq do
    redis.call('LREM', p .. ':idle:' .. ARGV[i], 0, wid)
    if room > 0 then redis.call('LPUSH', p .. ':idle:' .. ARGV[i], wid) end
  end
  redis.call('SET', reg, token .. '|' .. lease_until, 'PX', 2000)
  redis.call('SET', p .. ':asked:' .. wid, asked, 'PX', 2000)
  redis.call('SET', p .. ':waiting', '1', 'PX', 2000)
  return 0
end
for i = 8, 7 + nq do
  redis.call('LREM', p .. ':idle:' .. ARGV[i], 0, wid)
end
redis.call('DEL', reg, p .. ':asked:' .. wid)
local known = {}
for i = 8 + nq, #ARGV do known[ARGV[i]] = true end
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
