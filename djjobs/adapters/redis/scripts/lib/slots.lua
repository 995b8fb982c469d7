-- Prepended to the scripts that call it (adapter.py). Concurrency limits
-- (djjobs/concurrency.py): P:cjobs maps the id of every stored job with a concurrency key to
-- "<limit>|<a or b>|<key>" (b: blocked); P:slots:<key> is the SET of the ids of the jobs
-- holding the key's slots; P:blocked:<key> the LIST of its blocked jobs, FIFO; P:ckeys maps
-- each key in use (a slot taken or a job blocked) to its limit (the poller's repair pass and
-- the admin read it). A member of
-- P:slots holds its slot only while its job is ready or running (stored, not scheduled,
-- retrying, dead or cancelled): a slot whose job left by any other path counts as free.
local function cjob(p, id)
  local v = redis.call('HGET', p .. ':cjobs', id)
  if not v then return nil end
  local a = string.find(v, '|', 1, true)
  return string.sub(v, a + 3), tonumber(string.sub(v, 1, a - 1)), string.sub(v, a + 1, a + 1)
end
local function slots_free(p, key, limit)
  local slots = p .. ':slots:' .. key
  local n = redis.call('SCARD', slots)
  if n >= limit then
    for _, id in ipairs(redis.call('SMEMBERS', slots)) do
      if redis.call('HEXISTS', p .. ':payloads', id) == 0 or redis.call('ZSCORE', p .. ':scheduled', id)
          or redis.call('ZSCORE', p .. ':retry', id) or redis.call('ZSCORE', p .. ':dead', id)
          or redis.call('ZSCORE', p .. ':cancelled', id) then
        redis.call('SREM', slots, id)
        n = n - 1
      end
    end
  end
  return limit - n
end
-- To the back of its queue (its place from P:meta or its payload: lib/place.lua).
local function push_ready(p, id)
  local prio, queue = place(p, id)
  if not prio then return false end
  redis.call('RPUSH', p .. ':q:' .. queue .. ':' .. prio, id)
  redis.call('ZADD', p .. ':prios:' .. queue, -tonumber(prio), prio)
  redis.call('SADD', p .. ':queues', queue)
  if redis.call('EXISTS', p .. ':waiting') == 1 then redis.call('PUBLISH', p .. ':wake', '1') end
  return true
end
-- Job `id` becomes ready: true if it took (or holds) a slot, so the caller queues it; else it
-- is now blocked, behind the key's other blocked jobs (it needs its place in P:meta then).
local function admit(p, id, key, limit)
  local slots = p .. ':slots:' .. key
  if redis.call('SISMEMBER', slots, id) == 1 then return true end
  local blocked = p .. ':blocked:' .. key
  redis.call('HSET', p .. ':ckeys', key, limit)
  if redis.call('LLEN', blocked) == 0 and slots_free(p, key, limit) > 0 then
    redis.call('SADD', slots, id)
    redis.call('HSET', p .. ':cjobs', id, limit .. '|a|' .. key)
    return true
  end
  redis.call('RPUSH', blocked, id)
  redis.call('HSET', p .. ':cjobs', id, limit .. '|b|' .. key)
  return false
end
-- Make the key's oldest blocked jobs ready, as many as slots are free.
local function unblock(p, key, limit)
  local blocked = p .. ':blocked:' .. key
  while slots_free(p, key, limit) > 0 do
    local id = redis.call('LPOP', blocked)
    if not id then break end
    if redis.call('HEXISTS', p .. ':payloads', id) == 1 then  -- (one deleted meanwhile is skipped)
      redis.call('SADD', p .. ':slots:' .. key, id)
      redis.call('HSET', p .. ':cjobs', id, limit .. '|a|' .. key)
      push_ready(p, id)
    end
  end
  if redis.call('LLEN', blocked) == 0 and redis.call('SCARD', p .. ':slots:' .. key) == 0 then
    redis.call('HDEL', p .. ':ckeys', key)
  end
end
-- Job `id`'s outcome is stored (`gone`: and the job forgotten): its slot, if it held one,
-- goes to the key's oldest blocked jobs. Letting go twice does nothing more.
local function let_go(p, id, gone)
  local key, limit, flag = cjob(p, id)
  if not key then return end
  if gone then redis.call('HDEL', p .. ':cjobs', id) end
  if flag == 'b' then
    if gone then redis.call('LREM', p .. ':blocked:' .. key, 1, id) end
  else
    redis.call('SREM', p .. ':slots:' .. key, id)
  end
  unblock(p, key, limit)
end
