#!lua flags=allow-oom
-- Move due scheduled and retry jobs to the back of their queues (each once: ZREM decides); a
-- concurrency-limited one takes a slot or is blocked (lib/slots.lua). Then the repair pass:
-- each concurrency key in use admits blocked jobs into slots whose jobs left without an
-- outcome (deleted or lost), so no blocked job waits for a slot nobody holds; and cancel requests
-- of jobs no longer running are dropped.
-- ARGV: prefix, now, limit.
local p, now, limit = ARGV[1], ARGV[2], tonumber(ARGV[3])
local n, known = 0, {}
for _, set in ipairs({'scheduled', 'retry'}) do
  for _, id in ipairs(redis.call('ZRANGEBYSCORE', p .. ':' .. set, '-inf', now, 'LIMIT', 0, limit)) do
    if redis.call('ZREM', p .. ':' .. set, id) == 1 then
      local ckey, climit = cjob(p, id)
      local prio, queue = place(p, id)
      if ckey and prio and not admit(p, id, ckey, climit) then
        prio = nil  -- blocked
      end
      if prio then  -- gone or blocked otherwise
        redis.call('RPUSH', p .. ':q:' .. queue .. ':' .. prio, id)
        redis.call('ZADD', p .. ':prios:' .. queue, -tonumber(prio), prio)
        if not known[queue] then redis.call('SADD', p .. ':queues', queue) end
        known[queue] = true
        n = n + 1
      end
    end
  end
end
if n > 0 and redis.call('EXISTS', p .. ':waiting') == 1 then redis.call('PUBLISH', p .. ':wake', '1') end
if redis.call('HLEN', p .. ':cancel') > 0 then  -- requests of jobs that ended otherwise (succeeded, say)
  local asked = redis.call('HKEYS', p .. ':cancel')
  for i = 1, math.min(#asked, 1000) do
    if not redis.call('ZSCORE', p .. ':running', asked[i]) then redis.call('HDEL', p .. ':cancel', asked[i]) end
  end
end
local ckeys = redis.call('HGETALL', p .. ':ckeys')
for i = 1, math.min(#ckeys, 200), 2 do unblock(p, ckeys[i], tonumber(ckeys[i + 1])) end
return n
