#!lua flags=allow-oom
-- Delete every ready job of a queue. ARGV: prefix, queue, now. Their concurrency slots go to
-- blocked jobs (lib/slots.lua), which join the queue afresh once it is emptied; jobs waiting
-- for them are settled (lib/waits.lua).
local p, queue = ARGV[1], ARGV[2]
local ids = {}
for _, prio in ipairs(redis.call('ZRANGE', p .. ':prios:' .. queue, 0, -1)) do
  local key = p .. ':q:' .. queue .. ':' .. prio
  for _, id in ipairs(redis.call('LRANGE', key, 0, -1)) do ids[#ids + 1] = id end
  redis.call('DEL', key)
end
redis.call('DEL', p .. ':prios:' .. queue)
for _, id in ipairs(ids) do
  redis.call('HDEL', p .. ':payloads', id)
  redis.call('HDEL', p .. ':meta', id)
  let_go(p, id, true)
  parent_ended(p, id, 'deleted', ARGV[3])
end
return #ids
