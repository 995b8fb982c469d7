#!lua flags=allow-oom
-- Close a batch (its `with` block exited): it completes now if nothing is pending
-- (lib/batches.lua). ARGV: prefix, batch id, now. Closing twice, or an unknown batch, does nothing.
local p, id, now = ARGV[1], ARGV[2], ARGV[3]
local key = p .. ':batch:' .. id
if redis.call('EXISTS', key) == 0 or redis.call('HGET', key, 'o') == '1' then return 0 end
redis.call('HSET', key, 'o', '1')
batch_check(p, id, now)
return 1
