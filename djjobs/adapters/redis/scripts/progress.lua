#!lua flags=allow-oom
-- Store a running job's progress (djjobs/continuations.py): replace its payload, fenced by its
-- lease token; nothing else about the job changes. Admitted at maxmemory (allow-oom, first line)
-- as lease renewals are: a refused save would leave a job that was interrupted at shutdown to
-- start over. The payload grows only by the cursor.
-- KEYS: P:leases, P:payloads. ARGV: prefix (unused), job_id, token, payload.
-- Returns 1 if stored, 0 if the token no longer holds the job.
local id, token = ARGV[2], ARGV[3]
if redis.call('HGET', KEYS[1], id) ~= token then return 0 end
redis.call('HSET', KEYS[2], id, ARGV[4])
return 1
