-- A job's state, time and payload: {state, score or '', payload, queue} or {} when unknown.
-- ARGV: prefix, job_id.
local p, id = ARGV[1], ARGV[2]
local payload = redis.call('HGET', p .. ':payloads', id)
if not payload then return {} end
local _, queue = place(p, id, payload)
for _, state in ipairs({'running', 'scheduled', 'retry', 'dead', 'cancelled'}) do
  local score = redis.call('ZSCORE', p .. ':' .. state, id)
  if score then return {state, score, payload, queue} end
end
local waited = redis.call('ZSCORE', p .. ':waits', id)
if waited then return {'waiting', waited, payload, queue} end
local v = redis.call('HGET', p .. ':cjobs', id)  -- "<limit>|<a or b>|<key>": lib/slots.lua
if v and string.find(v, '|b|', 1, true) == string.find(v, '|', 1, true) then return {'blocked', '', payload, queue} end
return {'ready', '', payload, queue}
