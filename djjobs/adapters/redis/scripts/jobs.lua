-- One page of jobs in a state, filtered in Redis (plain substring matches on the
-- stored JSON), scanning at most `scan_limit` members. Returns {total, id, score, payload, ...}.
-- ARGV: prefix, state, queue or '', job or '', search (lowercase) or '', offset, count, scan_limit.
local p, state, queue, job, search = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local offset, count, scan_limit = tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8])
local function matches(id, payload)
  if job ~= '' and not string.find(payload, '"job":"' .. job .. '"', 1, true) then return false end
  if search ~= '' and id ~= search and not string.find(string.lower(payload), search, 1, true) then return false end
  return true
end
local members = {}
if state == 'ready' then
  local queues = queue ~= '' and {queue} or redis.call('SMEMBERS', p .. ':queues')
  table.sort(queues)
  for _, q in ipairs(queues) do
    for _, prio in ipairs(redis.call('ZRANGE', p .. ':prios:' .. q, 0, -1)) do
      local budget = scan_limit - #members  -- (an LRANGE stop of -1 or less would read whole lists)
      if budget <= 0 then break end
      for _, id in ipairs(redis.call('LRANGE', p .. ':q:' .. q .. ':' .. prio, 0, budget - 1)) do
        members[#members + 1] = {id, ''}
      end
    end
    if #members >= scan_limit then break end
  end
else
  local cmd = (state == 'dead' or state == 'cancelled') and 'ZREVRANGE' or 'ZRANGE'
  local raw = redis.call(cmd, p .. ':' .. (state == 'waiting' and 'waits' or state), 0, scan_limit - 1, 'WITHSCORES')
  for i = 1, #raw, 2 do
    if not is_anchor(raw[i]) then members[#members + 1] = {raw[i], raw[i + 1]} end
  end
end
local filtered = queue ~= '' and state ~= 'ready' or job ~= '' or search ~= ''
local out, total = {0}, 0
for _, m in ipairs(members) do
  local payload = nil
  local keep = true
  if filtered then
    payload = redis.call('HGET', p .. ':payloads', m[1]) or ''
    if queue ~= '' and state ~= 'ready' then
      local _, q = place(p, m[1], payload)
      keep = q == queue
    end
    keep = keep and matches(m[1], payload)
  end
  if keep then
    total = total + 1
    if total > offset and total <= offset + count then
      out[#out + 1] = m[1]
      out[#out + 1] = m[2]
      out[#out + 1] = payload or redis.call('HGET', p .. ':payloads', m[1]) or ''
    end
  end
end
out[1] = total
return out
