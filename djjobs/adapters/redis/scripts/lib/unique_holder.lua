-- Prepended to the scripts that call it (adapter.py). Unique jobs (djjobs/uniqueness.py):
-- P:unique maps a key to "job_id|expires|until" of the job that took it. The key is held
-- only while that job still holds it, decided here from the job's own state: it exists
-- (a payload), is not dead or cancelled, has not started when `until` is 'start', and `expires` has not
-- passed. So an entry left behind (a release lost with its worker, a job deleted or
-- trimmed) never blocks an enqueue. Returns the holder's id, or nil when the key is free.
-- `k`: the key names {unique, payloads, dead, leases, cancelled} (unique_keys(p) for the usual ones).
local function unique_keys(p)
  return {unique = p .. ':unique', payloads = p .. ':payloads', dead = p .. ':dead', leases = p .. ':leases',
          cancelled = p .. ':cancelled'}
end
local function unique_holder(k, key, now)
  local held = redis.call('HGET', k.unique, key)
  if not held then return nil end
  local a = string.find(held, '|', 1, true)
  local b = a and string.find(held, '|', a + 1, true)
  if not b then return nil end
  local id, expires, mode = string.sub(held, 1, a - 1), tonumber(string.sub(held, a + 1, b - 1)), string.sub(held, b + 1)
  if not expires or expires <= now or redis.call('HEXISTS', k.payloads, id) == 0
      or redis.call('ZSCORE', k.dead, id) or redis.call('ZSCORE', k.cancelled, id)
      or (mode == 'start' and redis.call('HEXISTS', k.leases, id) == 1) then
    return nil
  end
  return id
end
