-- Prepended to the scripts that call it (adapter.py). Drop the P:unique entry of `key` if
-- job `id` took it (a key taken over since, by "replace", is left to its new holder).
-- Holding is decided by unique_holder; this keeps P:unique as small as the keys in use.
-- `unique`: the P:unique key's name.
local function unique_release(unique, key, id)
  local held = redis.call('HGET', unique, key)
  if held and string.sub(held, 1, #id + 1) == id .. '|' then redis.call('HDEL', unique, key) end
end
