#!lua flags=allow-oom
-- Extend the leases of claims whose token still matches. Admitted at maxmemory (allow-oom,
-- first line): a refused renewal would let a running job's lease expire and the job run
-- again elsewhere; it only rewrites scores of entries that exist (ZADD XX).
-- ARGV: prefix, lease_until, then pairs (job_id, token).
local p, lease_until = ARGV[1], ARGV[2]
local n = 0
for i = 3, #ARGV, 2 do
  if redis.call('HGET', p .. ':leases', ARGV[i]) == ARGV[i + 1] then
    redis.call('ZADD', p .. ':running', 'XX', lease_until, ARGV[i])
    n = n + 1
  end
end
return n
