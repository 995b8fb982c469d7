#!lua flags=allow-oom
-- Batches' repair (Adapter.repair_batches): jobs counted pending in a batch that Redis no
-- longer has are settled as deleted; open batches given are completed if closed with nothing
-- pending (and dropped from P:bopen once complete); complete batches given are deleted when
-- they completed before the cutoff (BATCH_RETENTION_SECONDS). ARGV: prefix, now, cutoff, n,
-- n job ids, m, m open batch ids, then batch ids to prune. Returns how many batches changed.
local p, now, cutoff = ARGV[1], ARGV[2], tonumber(ARGV[3])
local jobs_end = 4 + tonumber(ARGV[4])
local open_end = jobs_end + 1 + tonumber(ARGV[jobs_end + 1])
local changed = 0
for i = 5, jobs_end do
  local id = ARGV[i]
  if redis.call('HEXISTS', p .. ':payloads', id) == 0 and redis.call('HEXISTS', p .. ':bjobs', id) == 1 then
    parent_ended(p, id, 'deleted', now)
    changed = changed + 1
  end
end
for i = jobs_end + 2, open_end do
  local id = ARGV[i]
  local key = p .. ':batch:' .. id
  if redis.call('EXISTS', key) == 0 or redis.call('HEXISTS', key, 'e') == 1 then
    redis.call('ZREM', p .. ':bopen', id)
  elseif batch_check(p, id, now) then
    changed = changed + 1
  end
end
for i = open_end + 1, #ARGV do
  local id = ARGV[i]
  local key = p .. ':batch:' .. id
  local completed = redis.call('HGET', key, 'e')
  if completed and tonumber(completed) < cutoff or redis.call('EXISTS', key) == 0 then
    redis.call('DEL', key, p .. ':bfail:' .. id)
    redis.call('ZREM', p .. ':batches', id)
    redis.call('ZREM', p .. ':bopen', id)
    redis.call('ZREM', p .. ':bdone', id)
  end
end
return changed
