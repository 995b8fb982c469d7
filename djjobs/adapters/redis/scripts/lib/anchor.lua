-- Prepended to the scripts that call it (adapter.py). Redis keeps a small hash or sorted
-- set (by default up to 128 entries of up to 64 bytes) in its compact listpack encoding,
-- where every write scans the whole key, and a sorted set's float scores are parsed
-- again at each step of the scan: a ZADD of 22 claims into a running set of 88 took
-- 460 µs, against 15 µs in the skiplist encoding (HSET of their leases: 43 µs against
-- 5.5). So the keys every claim and acknowledgement writes hold one entry longer than
-- 64 bytes, the anchor: Redis then keeps them in the hash-table encodings, never converts
-- them back while they exist, and the anchor keeps them from emptying. Its score is the
-- year 3000 (keys.ANCHOR_SCORE), so no lease query sees it; counts and listings leave it
-- out (finite, so that code from before the anchor, in a rolling deploy, shows a stray row
-- rather than failing on an infinite time).
local ANCHOR = '~djjobs anchor: keeps this key in the hash-table encoding of Redis; not a job~'
local function is_anchor(member) return member == ANCHOR end
-- One lookup per claiming call: the three are anchored together, and never emptied after.
local function anchor(p)
  if not redis.call('ZSCORE', p .. ':running', ANCHOR) then
    redis.call('ZADD', p .. ':running', '32503680000', ANCHOR)
    redis.call('HSET', p .. ':leases', ANCHOR, '')
    redis.call('HSET', p .. ':meta', ANCHOR, '')
  end
end
