#!lua flags=allow-oom
-- Delete every ready job of a queue. ARGV: prefix, queue.
local p, queue = ARGV[1], ARGV[2]
local n = 0
for _, prio in ipairs(redis.call('ZRANGE', p .. ':prios:' .. queue, 0, -1)) do
  local key = p .. ':q:' .. queue .. ':' .. prio
  for _, id in ipairs(redis.call('LRANGE', key, 0, -1)) do
    redis.call('HDEL', p .. ':payloads', id)
    redis.call('HDEL', p .. ':meta', id)
    n = n + 1
  end
  redis.call('DEL', key)
end
redis.call('DEL', p .. ':prios:' .. queue)
return n
