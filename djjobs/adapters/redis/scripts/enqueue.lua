-- Store a batch of jobs for ONE queue and priority: payloads, then ready (appended to
-- the queue's list in order) or scheduled (sorted set by run_at, and their place in P:meta,
-- which promotion reads; a ready job's place is the list it is in: scripts/lib/place.lua).
-- ARGV: prefix, queue, priority, mode ('1' scheduled, '' ready, 'raw' ready with a P:meta
-- entry: enqueue_raw's payload may not say where it belongs), batch id ('' for none), then per job:
--   ready: job_id, payload (pairs: the payload hash takes them as they come);
--   scheduled: job_id, run_at, payload.
-- Jobs with flow control: mode 'x' (ready) or 'x1' (scheduled), then the uniqueness key (''
-- for none), expires, until, conflict, now, the concurrency key ('' for none), its limit,
-- and ONE job as above. Unique: stored only if the key is free (lib/unique_holder.lua), in
-- this same step; else nothing is written and {'dup', holder id} is returned. Conflict
-- 'replace' deletes a holder that is not running first (a running one keeps running, and
-- the new job takes the key). Concurrency: a ready job takes a slot or is stored blocked
-- (lib/slots.lua), and is then neither queued nor handed off.
-- A batch whose first job is stored already was stored by this same call, sent again
-- after its reply was lost (RedisAdapter.run, redis-py's retries): it is not stored twice
-- (its ids would be queued twice, and run twice). Returns 0 then.
-- A batch's jobs count pending in it (lib/batches.lua) from this step; a batch complete or
-- unknown refuses the call before any write: {'batch'}.
local p, queue, prio, mode, batch = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local base, scheduled = 6, mode == '1' or mode == 'x1'
if mode == 'x' or mode == 'x1' then base = 13 end
if redis.call('HEXISTS', p .. ':payloads', ARGV[base]) == 1 then return 0 end
local members = nil
if batch ~= '' then
  if not batch_open(p, batch) then return {'batch'} end
  members = {}
  for i = base, #ARGV, scheduled and 3 or 2 do members[#members + 1] = ARGV[i] end
end
if base == 13 and ARGV[6] ~= '' then
  local key, mode_u = ARGV[6], ARGV[8]
  local holder = unique_holder(unique_keys(p), key, tonumber(ARGV[10]))
  if holder then
    if ARGV[9] ~= 'replace' then return {'dup', holder} end
    if redis.call('HEXISTS', p .. ':leases', holder) == 0 then  -- not started: it goes
      if redis.call('ZREM', p .. ':scheduled', holder) == 0 and redis.call('ZREM', p .. ':retry', holder) == 0 then
        local hprio, hqueue = place(p, holder)
        local list = p .. ':q:' .. hqueue .. ':' .. hprio
        redis.call('LREM', list, 1, holder)
        if redis.call('LLEN', list) == 0 then redis.call('ZREM', p .. ':prios:' .. hqueue, hprio) end
      end
      redis.call('HDEL', p .. ':payloads', holder)
      redis.call('HDEL', p .. ':meta', holder)
      let_go(p, holder, true)
      parent_ended(p, holder, 'deleted', ARGV[10])  -- an end: for its dependants and its batch
    end
  end
  redis.call('HSET', p .. ':unique', key, ARGV[base] .. '|' .. ARGV[7] .. '|' .. mode_u)
end
if members then batch_join(p, batch, members) end
if base == 13 and ARGV[11] ~= '' then
  local id, ckey, climit = ARGV[base], ARGV[11], tonumber(ARGV[12])
  if scheduled then
    redis.call('HSET', p .. ':cjobs', id, climit .. '|a|' .. ckey)
  elseif not admit(p, id, ckey, climit) then  -- blocked: stored with its place, not queued
    redis.call('HSET', p .. ':payloads', id, ARGV[base + 1])
    redis.call('HSET', p .. ':meta', id, prio .. '|' .. queue)
    redis.call('SADD', p .. ':queues', queue)
    return 1
  end
end
local ids, zs = {}, {}
if scheduled then
  local payloads, metas, meta = {}, {}, prio .. '|' .. queue
  for i = base, #ARGV, 3 do
    local id = ARGV[i]
    payloads[#payloads + 1] = id
    payloads[#payloads + 1] = ARGV[i + 2]
    metas[#metas + 1] = id
    metas[#metas + 1] = meta
    zs[#zs + 1] = ARGV[i + 1]
    zs[#zs + 1] = id
  end
  redis.call('HSET', p .. ':payloads', unpack(payloads))
  redis.call('HSET', p .. ':meta', unpack(metas))
else
  for i = base, #ARGV, 2 do ids[#ids + 1] = ARGV[i] end
  redis.call('HSET', p .. ':payloads', unpack(ARGV, base))
  if mode == 'raw' then
    for _, id in ipairs(ids) do redis.call('HSET', p .. ':meta', id, prio .. '|' .. queue) end
  end
end
redis.call('SADD', p .. ':queues', queue)
if scheduled then
  redis.call('ZADD', p .. ':scheduled', unpack(zs))
  return #zs / 2
end
-- Hand-off: while the queue is empty (so no ready job is overtaken) and not paused, give
-- the first jobs to idle fetchers that registered for this queue (idle.lua), at most one
-- each, longest-waiting first: the job is leased with the fetcher's token and published on
-- its own channel (token:lease_until:len(id):id payload: the fetcher learns the lease the
-- job really got, not its registration's latest), so it starts without a claim round trip.
-- A registration says how many jobs its fetcher asked for (P:asked:<worker>: its free
-- threads and prefetch allowance) and P:handed:<worker> holds those handed to it and not yet
-- confirmed received (idle.lua and fetch.lua remove them as it reports them), so asked -
-- SCARD is what it may still take, across any number of enqueue calls: a bulk of unique
-- jobs is one call per job, each of which would otherwise find the same fetcher listed
-- again. The fetcher goes back to the head of the list only while it may take more (idle
-- fetchers take turns); one that has all it asked for leaves the list until it registers
-- again or reports what it received. A registration without P:asked (written by an older
-- djjobs during a rolling deploy) takes one job. PUBLISH counts receivers: no receiver, no
-- hand-off, and an entry that is expired or unheard is dropped. A fetcher that dies holding
-- a message loses nothing: the lease recovers the job, as for any claimed job. (Sent again
-- after a lost reply, this call stores and hands nothing: its first job is stored already.)
local first, idle = 1, p .. ':idle:' .. queue
if redis.call('EXISTS', idle) == 1 and redis.call('EXISTS', p .. ':prios:' .. queue) == 0
    and redis.call('SISMEMBER', p .. ':paused', queue) == 0 then
  local served = {}
  for _ = 1, 16 do
    if first > #ids then break end
    local wid = redis.call('RPOP', idle)
    if not wid then break end
    if served[wid] then  -- every live fetcher has one job from this call: the rest queue up
      redis.call('RPUSH', idle, wid)
      break
    end
    local reg = redis.call('MGET', p .. ':idler:' .. wid, p .. ':asked:' .. wid)
    local handed = p .. ':handed:' .. wid
    local room = reg[1] and (tonumber(reg[2]) or 1) - redis.call('SCARD', handed) or 0
    if room > 0 then
      local sep = string.find(reg[1], '|', 1, true)
      local token, lease_until = string.sub(reg[1], 1, sep - 1), string.sub(reg[1], sep + 1)
      local id = ids[first]
      local message = token .. ':' .. lease_until .. ':' .. #id .. ':' .. id .. ARGV[base - 1 + 2 * first]
      if redis.call('PUBLISH', p .. ':hand:' .. wid, message) > 0 then
        if first == 1 then anchor(p) end
        redis.call('ZADD', p .. ':running', lease_until, id)
        redis.call('HSET', p .. ':leases', id, token)
        redis.call('SADD', handed, id)
        redis.call('EXPIRE', handed, 3600)
        if room > 1 then redis.call('LPUSH', idle, wid) end
        served[wid] = true
        first = first + 1
      end
    end
  end
  if first > #ids then return #ids end
end
redis.call('RPUSH', p .. ':q:' .. queue .. ':' .. prio, unpack(ids, first))
redis.call('ZADD', p .. ':prios:' .. queue, -tonumber(prio), prio)
if redis.call('EXISTS', p .. ':waiting') == 1 then redis.call('PUBLISH', p .. ':wake', '1') end
return #ids
