-- Prepended to the scripts that call it (adapter.py). Prerequisites (djjobs/prerequisites.py):
-- a waiting job is in P:waits (by enqueue time) with P:wjobs id -> "<policy>|<run_at or ''>", its
-- place in P:meta, and the SET P:pending:<id> of its prerequisites not ended yet; P:parents
-- maps a prerequisite's id to the ids of the jobs waiting for it (space-separated). The step
-- that ends a job calls parent_ended in the same script, so a dependant is settled atomically
-- with its prerequisite's end; SREM counts each prerequisite once per dependant.
local PREREQ_HOW = {dead = 'failed for good', discarded = 'was discarded', cancelled = 'was cancelled',
                    deleted = 'was deleted'}
-- Its wait is over: scheduled (its run time ahead; promotion queues it when due), or ready
-- (taking a concurrency slot, or blocked: lib/slots.lua).
local function wait_over(p, id, run_at, now)
  redis.call('ZREM', p .. ':waits', id)
  redis.call('HDEL', p .. ':wjobs', id)
  redis.call('DEL', p .. ':pending:' .. id)
  if run_at ~= '' and (not now or tonumber(run_at) > tonumber(now)) then
    redis.call('ZADD', p .. ':scheduled', run_at, id)
    return
  end
  local ckey, climit = cjob(p, id)
  if not ckey or admit(p, id, ckey, climit) then push_ready(p, id) end
end
-- A prerequisite ended badly and the policy is 'dead' or 'discard': returns how the job ended.
local function end_waiting(p, id, policy, parent, how, now)
  redis.call('ZREM', p .. ':waits', id)
  redis.call('HDEL', p .. ':wjobs', id)
  redis.call('DEL', p .. ':pending:' .. id)
  if policy == 'discard' then
    redis.call('HDEL', p .. ':payloads', id)
    redis.call('HDEL', p .. ':meta', id)
    redis.call('HDEL', p .. ':cjobs', id)
    return 'discarded'
  end
  redis.call('ZADD', p .. ':dead', now, id)
  redis.call('HSET', p .. ':errors', id, cjson.encode({class = 'djjobs.errors.PrerequisiteFailed',
    message = 'Prerequisite ' .. parent .. ' ' .. (PREREQ_HOW[how] or ('ended (' .. how .. ')'))
              .. '; this job did not run.', traceback = '', failed_at = tonumber(now)}))
  return 'dead'
end
-- Job `id` ended (`how`: '' for a success, else 'dead', 'discarded', 'cancelled', 'deleted'):
-- settle the jobs waiting for it, and down the chain those it ends badly, and each of them in
-- its batch. `now` may be nil for a success (a released job whose run time is set goes to the
-- scheduled set; the caller settles the job in its batch then).
local function parent_ended(p, id, how, now)
  local todo = {id, how}
  local steps = 0
  while #todo > 0 and steps < 100000 do
    steps = steps + 1
    local h = table.remove(todo)
    local parent = table.remove(todo)
    if now then batch_ended(p, parent, h, now) end  -- each job ended here, in its batch (lib/batches.lua)
    local children = redis.call('HGET', p .. ':parents', parent)
    if children then
      redis.call('HDEL', p .. ':parents', parent)
      for child in string.gmatch(children, '%S+') do
        local w = redis.call('HGET', p .. ':wjobs', child)
        if w and redis.call('SREM', p .. ':pending:' .. child, parent) == 1 then
          local sep = string.find(w, '|', 1, true)
          local policy, run_at = string.sub(w, 1, sep - 1), string.sub(w, sep + 1)
          if h ~= '' and policy ~= 'run' then
            todo[#todo + 1] = child
            todo[#todo + 1] = end_waiting(p, child, policy, parent, h, now)
          elseif redis.call('SCARD', p .. ':pending:' .. child) == 0 then
            wait_over(p, child, run_at, now)
          end
        end
      end
    end
  end
end
