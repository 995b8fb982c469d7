#!lua flags=allow-oom
-- Acknowledge finished jobs, then claim up to `limit` ready jobs: one round trip
-- per worker batch, and a handful of variadic commands per call rather than a few
-- per job (Redis serves no other client while a script runs; short scripts keep the
-- job bodies' own commands waiting less).
-- Acknowledge: forget each finished job whose lease token still matches (a job
-- whose lease expired and now runs elsewhere is left alone); count them processed.
-- Claim: queues in the order given, highest priority first, FIFO within a priority;
-- skip paused queues. Each claimed job gets a lease (running: score = lease expiry)
-- fenced by `token`.
-- Unique jobs among the acknowledged ones let go of their keys (lib/unique_release.lua), and
-- concurrency-limited ones of their slots, admitting blocked jobs (lib/slots.lua) in time
-- for this same call to claim them; and jobs waiting for them as prerequisites are settled
-- (lib/waits.lua), and jobs of a batch settled in it (lib/batches.lua).
-- Report: a fetcher registered as idle (idle.lua) confirms the hand-offs it received since
-- it last said, and says how many jobs it may take now (`limit`): jobs handed to it and not
-- received yet take part of that (it runs them first), the claim the rest, and what is left
-- bounds what enqueue.lua may still hand it. This call is the one round trip a handed job
-- costs the worker (its ack), so the count is right again, and the fetcher listed again,
-- without another.
-- ARGV: prefix, lease_until, token, limit, day, now, n, then n pairs (job_id, token), then m,
-- then m pairs (uniqueness key, job_id) of acknowledged unique jobs, then c, then the ids
-- of c acknowledged concurrency-limited jobs, then the registered worker id ('' for none),
-- its registration's token, r, and the r job ids it received, then queue...
local p, lease_until, token, limit, day, now = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4]), ARGV[5], ARGV[6]
local acks_end = 7 + 2 * tonumber(ARGV[7])
local keys_end = acks_end + 1 + 2 * tonumber(ARGV[acks_end + 1])
local slots_end = keys_end + 1 + tonumber(ARGV[keys_end + 1])
local wid, idle_token = ARGV[slots_end + 1], ARGV[slots_end + 2]
local received_end = slots_end + 3 + tonumber(ARGV[slots_end + 3])

-- The same call sent again after its reply was lost (RedisAdapter.run): return what it
-- claimed the first time (leased with this token at exactly this expiry) instead of a
-- second batch, which nobody would run until its lease expired. A first call finds none.
-- (They come back ordered by id, not as claimed: the worker runs a batch concurrently.)
if limit > 0 then
  local again = {}
  for _, id in ipairs(redis.call('ZRANGEBYSCORE', p .. ':running', lease_until, lease_until)) do
    if redis.call('HGET', p .. ':leases', id) == token then
      again[#again + 1] = id
      again[#again + 1] = redis.call('HGET', p .. ':payloads', id) or ''
    end
  end
  if #again > 0 then return again end
end

-- A variadic command in slices, within Lua's limit on unpacked values; the replies joined.
local function call_in_slices(command, key, args, width)
  local step, replies = 1000 * width, {}
  for i = 1, #args, step do
    local reply = redis.call(command, key, unpack(args, i, math.min(i + step - 1, #args)))
    if type(reply) == 'table' then
      for _, value in ipairs(reply) do replies[#replies + 1] = value end
    end
  end
  return replies
end

if acks_end > 7 then
  local ids, seen = {}, {}
  for i = 8, acks_end, 2 do ids[#ids + 1] = ARGV[i] end
  local tokens, done = call_in_slices('HMGET', p .. ':leases', ids, 1), {}
  for k, id in ipairs(ids) do
    if tokens[k] == ARGV[7 + 2 * k] and not seen[id] then
      seen[id] = true
      done[#done + 1] = id
    end
  end
  if #done > 0 then
    call_in_slices('HDEL', p .. ':leases', done, 1)
    call_in_slices('ZREM', p .. ':running', done, 1)
    call_in_slices('HDEL', p .. ':payloads', done, 1)
    call_in_slices('HDEL', p .. ':meta', done, 1)
    redis.call('INCRBY', p .. ':stat:processed', #done)
    redis.call('INCRBY', p .. ':stat:processed:' .. day, #done)
    redis.call('EXPIRE', p .. ':stat:processed:' .. day, 34560000)
  end
  -- Each acknowledged job with an entry in `hash` (one HLEN when none has): settle(id, entry).
  local function each_marked(hash, settle)
    if #done == 0 or redis.call('HLEN', hash) == 0 then return end
    local marks = call_in_slices('HMGET', hash, done, 1)
    for k, id in ipairs(done) do
      if marks[k] then settle(id, marks[k]) end
    end
  end
  each_marked(p .. ':bjobs', function(id, batch) batch_ended(p, id, '', now, batch) end)  -- lib/batches.lua
  each_marked(p .. ':parents', function(id) parent_ended(p, id, '', nil) end)  -- jobs waiting: lib/waits.lua
  for i = acks_end + 2, keys_end, 2 do
    if seen[ARGV[i + 1]] then unique_release(p .. ':unique', ARGV[i], ARGV[i + 1]) end
  end
  for i = keys_end + 2, slots_end do
    if seen[ARGV[i]] then let_go(p, ARGV[i], true) end
  end
end

local asked, handed, mine = limit, p .. ':handed:' .. wid, false
if wid ~= '' then  -- the report (above); sent twice, it does the same
  for i = slots_end + 4, received_end, 1000 do
    redis.call('SREM', handed, unpack(ARGV, i, math.min(i + 999, received_end)))
  end
  local reg = redis.call('GET', p .. ':idler:' .. wid)
  mine = reg ~= false and string.sub(reg, 1, #idle_token + 1) == idle_token .. '|'
  if mine then limit = math.max(limit - redis.call('SCARD', handed), 0) end
end

local out, got, leases, running = {}, 0, {}, {}
for qi = received_end + 1, #ARGV do
  if got >= limit then break end
  local queue = ARGV[qi]
  if redis.call('SISMEMBER', p .. ':paused', queue) == 0 then
    for _, prio in ipairs(redis.call('ZRANGE', p .. ':prios:' .. queue, 0, -1)) do
      local key = p .. ':q:' .. queue .. ':' .. prio
      while got < limit do
        local ids = redis.call('LPOP', key, math.min(limit - got, 1000))  -- at most 1,000: unpacked below
        if not ids then break end
        local payloads = redis.call('HMGET', p .. ':payloads', unpack(ids))
        for k, id in ipairs(ids) do
          if payloads[k] then  -- an id without a payload was deleted meanwhile: skip it
            got = got + 1
            out[#out + 1] = id
            out[#out + 1] = payloads[k]
            running[#running + 1] = lease_until
            running[#running + 1] = id
            leases[#leases + 1] = id
            leases[#leases + 1] = token
          end
        end
      end
      if redis.call('LLEN', key) == 0 then redis.call('ZREM', p .. ':prios:' .. queue, prio) end
      if got >= limit then break end
    end
  end
end
if got > 0 then
  anchor(p)
  call_in_slices('ZADD', p .. ':running', running, 2)
  call_in_slices('HSET', p .. ':leases', leases, 2)
end
if mine then  -- XX, KEEPTTL: it lives no longer than the registration it belongs to
  redis.call('SET', p .. ':asked:' .. wid, asked - got, 'XX', 'KEEPTTL')
  -- A fetcher that left the idle lists with all it asked for (enqueue.lua) goes back once it
  -- may take more, as one just served: without it, the next enqueues would queue their jobs
  -- until its registration's refresh. (One that claimed jobs deregisters next.)
  if got == 0 and asked - redis.call('SCARD', handed) > 0 then
    for qi = received_end + 1, #ARGV do
      local list = p .. ':idle:' .. ARGV[qi]
      if not redis.call('LPOS', list, wid) then redis.call('LPUSH', list, wid) end
    end
  end
end
return out
