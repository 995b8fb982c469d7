#!lua flags=allow-oom
-- Store a new, open batch (lib/batches.lua has the model). KEYS: P:batch:<id>, P:batches, P:bopen
-- (every key it touches). ARGV: prefix, batch id, created, description, properties (JSON),
-- callback ids (JSON), then per callback: event, "<priority>|<queue>", payload. Opening an id that
-- exists changes nothing (the same call sent again).
local id, created = ARGV[2], ARGV[3]
local key = KEYS[1]
if redis.call('EXISTS', key) == 1 then return 0 end
local fields = {'c', created, 'd', ARGV[4], 'p', ARGV[5], 'ids', ARGV[6], 't', 0, 'n', 0, 's', 0, 'x', 0, 'q', 0, 'k', 0}
for i = 7, #ARGV, 3 do
  fields[#fields + 1] = 'cq:' .. ARGV[i]
  fields[#fields + 1] = ARGV[i + 1]
  fields[#fields + 1] = 'cb:' .. ARGV[i]
  fields[#fields + 1] = ARGV[i + 2]
end
redis.call('HSET', key, unpack(fields))
redis.call('ZADD', KEYS[2], created, id)
redis.call('ZADD', KEYS[3], created, id)
return 1
