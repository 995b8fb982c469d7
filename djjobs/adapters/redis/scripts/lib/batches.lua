-- Prepended to the scripts that call it (adapter.py). Batches (djjobs/batches.py): P:batch:<id>
-- HASH holds the counts (t total, n pending, s succeeded, x dead, q discarded, k cancelled),
-- d description, c created, o '1' once closed, e completed, p properties (JSON), ids (JSON
-- event -> callback job id), and per callback event cb:<event> its payload and cq:<event>
-- "<priority>|<queue>"; f:<event> marks it fired. P:bjobs maps each job pending in a batch to
-- the batch; P:bfail:<id> ZSET its jobs that ended dead or cancelled; P:batches ZSET every
-- batch by creation, P:bopen those not complete (the repair's list), P:bdone the complete
-- ones by completion (pruned BATCH_RETENTION_SECONDS after). The step that ends a job
-- settles it here in the same script: HDEL P:bjobs is the once-only gate, so a job ended
-- twice (at-least-once) counts once, and HSETNX f:<event> stores each callback once.
local BATCH_ENDS = {[''] = 's', dead = 'x', discarded = 'q', deleted = 'q', cancelled = 'k'}
local STATUS_ARG, ENQUEUED_AT = '"args":["djjobs:batch-status"', '"enqueued_at":0,'

-- The status a callback receives (BatchStatus.to_dict): built as text, so that the stored
-- JSON (properties, callback ids) goes through unchanged.
local function batch_status_json(key, id, event, now)
  local v = redis.call('HMGET', key, 't', 'n', 's', 'x', 'q', 'k', 'o', 'c', 'e', 'd', 'p', 'ids')
  local completed = v[9] or (event ~= 'death' and now) or nil
  return '{"id":' .. cjson.encode(id) .. ',"description":' .. cjson.encode(v[10] or '') ..
    ',"total":' .. (v[1] or '0') .. ',"pending":' .. (v[2] or '0') .. ',"succeeded":' .. (v[3] or '0') ..
    ',"dead":' .. (v[4] or '0') .. ',"discarded":' .. (v[5] or '0') .. ',"cancelled":' .. (v[6] or '0') ..
    ',"closed":' .. (v[7] == '1' and 'true' or 'false') .. ',"created_ts":' .. (v[8] or '0') ..
    ',"completed_ts":' .. (completed or 'null') .. ',"properties":' .. (v[11] or '{}') ..
    ',"callbacks":' .. (v[12] or '{}') .. ',"event":' .. cjson.encode(event) .. '}'
end

local function replaced(text, old, new)
  local at = string.find(text, old, 1, true)
  if not at then return text end
  return string.sub(text, 1, at - 1) .. new .. string.sub(text, at + #old)
end

-- Store the batch's `event` callback, ready at the back of its queue, unless stored already.
local function batch_fire(p, id, event, now)
  local key = p .. ':batch:' .. id
  local payload = redis.call('HGET', key, 'cb:' .. event)
  if not payload or redis.call('HSETNX', key, 'f:' .. event, '1') == 0 then return end
  local place = redis.call('HGET', key, 'cq:' .. event)
  local sep = string.find(place, '|', 1, true)
  local prio, queue = string.sub(place, 1, sep - 1), string.sub(place, sep + 1)
  local job_id = cjson.decode(redis.call('HGET', key, 'ids'))[event]
  payload = replaced(payload, STATUS_ARG, '"args":[' .. batch_status_json(key, id, event, now))
  payload = replaced(payload, ENQUEUED_AT, '"enqueued_at":' .. now .. ',')
  redis.call('HSET', p .. ':payloads', job_id, payload)
  redis.call('RPUSH', p .. ':q:' .. queue .. ':' .. prio, job_id)
  redis.call('ZADD', p .. ':prios:' .. queue, -tonumber(prio), prio)
  redis.call('SADD', p .. ':queues', queue)
  if redis.call('EXISTS', p .. ':waiting') == 1 then redis.call('PUBLISH', p .. ':wake', '1') end
end

-- A closed batch with nothing pending completes (once): on_complete, then on_success if no
-- job failed. Returns true if it completed now.
local function batch_check(p, id, now)
  local key = p .. ':batch:' .. id
  local v = redis.call('HMGET', key, 'o', 'n', 'e', 'x', 'q', 'k')
  if v[1] ~= '1' or tonumber(v[2] or '0') > 0 or v[3] then return false end
  redis.call('HSET', key, 'e', now)
  redis.call('ZREM', p .. ':bopen', id)
  redis.call('ZADD', p .. ':bdone', now, id)
  batch_fire(p, id, 'complete', now)
  if tonumber(v[4] or '0') + tonumber(v[5] or '0') + tonumber(v[6] or '0') == 0 then
    batch_fire(p, id, 'success', now)
  end
  return true
end

-- Job `id` ended (`how` as for prerequisites: '' for a success): settle it in its batch
-- (`batch`: its entry in P:bjobs when the caller read it already).
local function batch_ended(p, id, how, now, batch)
  batch = batch or redis.call('HGET', p .. ':bjobs', id)
  if not batch or redis.call('HDEL', p .. ':bjobs', id) == 0 then return end
  local key = p .. ':batch:' .. batch
  if redis.call('EXISTS', key) == 0 then return end
  local field = BATCH_ENDS[how] or 'q'
  redis.call('HINCRBY', key, 'n', -1)
  redis.call('HINCRBY', key, field, 1)
  if field == 'x' or field == 'k' then redis.call('ZADD', p .. ':bfail:' .. batch, now, id) end
  if field == 'x' then batch_fire(p, batch, 'death', now) end
  batch_check(p, batch, now)
end

-- Jobs stored in a batch count pending from this step (the caller checked batch_open).
local function batch_join(p, batch, ids)
  local pairs_ = {}
  for _, id in ipairs(ids) do
    pairs_[#pairs_ + 1] = id
    pairs_[#pairs_ + 1] = batch
  end
  if #pairs_ == 0 then return end
  for i = 1, #pairs_, 2000 do
    redis.call('HSET', p .. ':bjobs', unpack(pairs_, i, math.min(i + 1999, #pairs_)))
  end
  redis.call('HINCRBY', p .. ':batch:' .. batch, 't', #ids)
  redis.call('HINCRBY', p .. ':batch:' .. batch, 'n', #ids)
end

-- Whether jobs may join `batch`: it exists and is not complete.
local function batch_open(p, batch)
  local v = redis.call('HMGET', p .. ':batch:' .. batch, 'c', 'e')
  return v[1] and not v[2]
end
