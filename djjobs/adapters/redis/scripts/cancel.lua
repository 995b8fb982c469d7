#!lua flags=allow-oom
-- Cancel jobs (djjobs/cancellation.py). A ready, scheduled, retrying, blocked or waiting job goes to
-- P:cancelled (score now), out of its queue, blocked line and slot (lib/slots.lua), each in
-- this one step, so no fetch can claim it after; a running job gets a request in P:cancel,
-- honoured by the step that stores its outcome (move.lua). Jobs waiting for a cancelled one
-- are settled in this same step (lib/waits.lua). Jobs dead, cancelled already or
-- unknown are left alone. ARGV: prefix, now, then job ids.
-- Returns {id, 'cancelled' or 'cancelling', ...}. (Queue, blocked and slot keys are derived from
-- the job's place, as move.lua does; the fixed ones are built from the prefix.)
local p, now = ARGV[1], ARGV[2]
local out = {}
for i = 3, #ARGV do
  local id = ARGV[i]
  if redis.call('HEXISTS', p .. ':payloads', id) == 1 and not redis.call('ZSCORE', p .. ':dead', id)
      and not redis.call('ZSCORE', p .. ':cancelled', id) then
    if redis.call('ZSCORE', p .. ':running', id) then
      redis.call('HSETNX', p .. ':cancel', id, now)
      out[#out + 1] = id
      out[#out + 1] = 'cancelling'
    else
      local prio, queue = place(p, id)
      prio, queue = prio or '0', queue or 'default'
      local waited = redis.call('ZREM', p .. ':scheduled', id) + redis.call('ZREM', p .. ':retry', id)
        + redis.call('ZREM', p .. ':waits', id)
      redis.call('HDEL', p .. ':wjobs', id)  -- (waiting: its prerequisites' lists skip it from now)
      redis.call('DEL', p .. ':pending:' .. id)
      local ckey, climit, flag = cjob(p, id)
      if ckey and flag == 'b' then  -- blocked: out of its key's line (it held no slot)
        redis.call('LREM', p .. ':blocked:' .. ckey, 1, id)
        redis.call('HSET', p .. ':cjobs', id, climit .. '|a|' .. ckey)
      elseif waited == 0 then  -- ready: out of its queue
        redis.call('LREM', p .. ':q:' .. queue .. ':' .. prio, 1, id)
      end
      redis.call('HSET', p .. ':meta', id, prio .. '|' .. queue)
      redis.call('ZADD', p .. ':cancelled', now, id)
      if ckey then let_go(p, id, false) end
      parent_ended(p, id, 'cancelled', now)
      out[#out + 1] = id
      out[#out + 1] = 'cancelled'
    end
  end
end
return out
