#!lua flags=allow-oom
-- Unique jobs' upkeep (lib/unique_holder.lua has the model). Every key it touches is in KEYS:
-- P:unique, P:payloads, P:dead, P:leases, P:cancelled. ARGV: prefix (unused), op, then:
--   'holds', now, cursor, count: one HSCAN step of P:unique: {next cursor, key, id,
--             expires, until, ...} for the keys held now; entries no longer held are dropped;
--   'free', key, now: drop the key by hand; returns 1 if it was held.
-- Allowed at maxmemory: each step only deletes.
local k = {unique = KEYS[1], payloads = KEYS[2], dead = KEYS[3], leases = KEYS[4], cancelled = KEYS[5]}
local op = ARGV[2]
if op == 'holds' then
  local now = tonumber(ARGV[3])
  local scan = redis.call('HSCAN', k.unique, ARGV[4], 'COUNT', ARGV[5])
  local out = {scan[1]}
  local entries = scan[2]
  for i = 1, #entries, 2 do
    local key, held = entries[i], entries[i + 1]
    if unique_holder(k, key, now) then
      local a = string.find(held, '|', 1, true)
      local b = string.find(held, '|', a + 1, true)
      out[#out + 1] = key
      out[#out + 1] = string.sub(held, 1, a - 1)
      out[#out + 1] = string.sub(held, a + 1, b - 1)
      out[#out + 1] = string.sub(held, b + 1)
    else
      redis.call('HDEL', k.unique, key)
    end
  end
  return out
elseif op == 'free' then
  local held = unique_holder(k, ARGV[3], tonumber(ARGV[4]))
  redis.call('HDEL', k.unique, ARGV[3])
  return held and 1 or 0
end
return redis.error_reply('unique.lua: unknown op ' .. tostring(op))
