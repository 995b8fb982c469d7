#!lua flags=allow-oom
-- Admin changes on jobs that are not running. ARGV: prefix, action, now, then job ids.
-- action 'retry_now': scheduled/retry/dead/cancelled -> back of its queue; 'kill': scheduled/retry -> dead;
-- 'delete': any state but running -> gone. Jobs waiting for one killed or deleted are settled
-- (lib/waits.lua). Returns how many changed.
local p, action, now = ARGV[1], ARGV[2], ARGV[3]
local n = 0
local function locate(id)
  for _, state in ipairs({'scheduled', 'retry', 'dead', 'cancelled'}) do
    if redis.call('ZSCORE', p .. ':' .. state, id) then return state end
  end
  if redis.call('ZSCORE', p .. ':running', id) then return 'running' end
  if redis.call('ZSCORE', p .. ':waits', id) then return 'waiting' end
  if redis.call('HEXISTS', p .. ':payloads', id) == 1 then return 'ready' end
  return nil
end
local function split(id)
  local prio, queue = place(p, id)
  return prio or '0', queue or 'default'
end
for i = 4, #ARGV do
  local id = ARGV[i]
  local state = locate(id)
  if action == 'retry_now' and (state == 'scheduled' or state == 'retry' or state == 'dead' or state == 'cancelled') then
    redis.call('ZREM', p .. ':' .. state, id)
    redis.call('HDEL', p .. ':errors', id)
    local prio, queue = split(id)
    local ckey, climit = cjob(p, id)
    if not ckey or admit(p, id, ckey, climit) then  -- else blocked (lib/slots.lua)
      redis.call('RPUSH', p .. ':q:' .. queue .. ':' .. prio, id)
      redis.call('ZADD', p .. ':prios:' .. queue, -tonumber(prio), prio)
      redis.call('SADD', p .. ':queues', queue)
    end
    n = n + 1
  elseif action == 'kill' and (state == 'scheduled' or state == 'retry') then
    redis.call('ZREM', p .. ':' .. state, id)
    redis.call('ZADD', p .. ':dead', now, id)
    parent_ended(p, id, 'dead', now)
    n = n + 1
  elseif action == 'delete' and state and state ~= 'running' then
    if state == 'ready' then
      local prio, queue = split(id)
      redis.call('LREM', p .. ':q:' .. queue .. ':' .. prio, 0, id)
    elseif state == 'waiting' then
      redis.call('ZREM', p .. ':waits', id)
      redis.call('HDEL', p .. ':wjobs', id)
      redis.call('DEL', p .. ':pending:' .. id)
    else
      redis.call('ZREM', p .. ':' .. state, id)
    end
    redis.call('HDEL', p .. ':payloads', id)
    redis.call('HDEL', p .. ':meta', id)
    redis.call('HDEL', p .. ':errors', id)
    let_go(p, id, true)
    parent_ended(p, id, 'deleted', now)
    n = n + 1
  end
end
if n > 0 and action == 'retry_now' and redis.call('EXISTS', p .. ':waiting') == 1 then
  redis.call('PUBLISH', p .. ':wake', '1')
end
return n
