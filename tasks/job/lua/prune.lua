-- Retention: forget the index entries of records that expired. KEYS: every-jobs index, the six
-- state indexes, expiry, outbox; ARGV: limit, record key prefix. A record still there with a TTL
-- (Redis expires it in the next millisecond) is looked at again then; one there without a TTL
-- lives again (used anew) and keeps its entries. Returns how many were forgotten.
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local due = redis.call('ZRANGEBYSCORE', KEYS[8], '-inf', now, 'LIMIT', 0, tonumber(ARGV[1]))
local pruned = 0
for _, id in ipairs(due) do
  local ttl = redis.call('PTTL', ARGV[2] .. id)
  if ttl > 0 then
    redis.call('ZADD', KEYS[8], now + ttl / 1000, id)
  elseif ttl == -1 then
    redis.call('ZREM', KEYS[8], id)
  else
    redis.call('ZREM', KEYS[8], id)
    for k = 1, 7 do redis.call('ZREM', KEYS[k], id) end
    redis.call('ZREM', KEYS[9], id)
    pruned = pruned + 1
  end
end
return pruned
