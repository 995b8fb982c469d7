-- Prepended to the scripts that call it (adapter.py). Where a stored job belongs:
-- priority (as the queue key spells it) and queue. P:meta holds it for every job that
-- is scheduled, retrying or dead, or was stored by enqueue_raw (whose payload may not say
-- it), so promotion reads it cheaply; a job enqueued ready has none (the list it is in
-- says where it belongs, and bulk enqueues skip a hash write per job), so the rare paths
-- that need it for a ready or running job (release without a place, admin, get) read
-- the payload (given, or read here). Priorities read from a payload are exact up to
-- 2**53. Returns nothing for a job that is gone (neither entry nor payload).
local function place(p, id, payload)
  local meta = redis.call('HGET', p .. ':meta', id)
  local sep = meta and string.find(meta, '|', 1, true)
  if sep then  -- (an entry without one is not a place: the anchor, lib/anchor.lua)
    return string.sub(meta, 1, sep - 1), string.sub(meta, sep + 1)
  end
  payload = payload or redis.call('HGET', p .. ':payloads', id)
  if not payload then return nil, nil end
  local ok, env = pcall(cjson.decode, payload)
  if ok and type(env) == 'table' and type(env.queue) == 'string' then
    return string.format('%.0f', tonumber(env.priority) or 0), env.queue
  end
  return '0', 'default'
end
