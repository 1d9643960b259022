-- ARGV: holder, ttl_ms, expectations... -> {1, record, now} | {0, holder, pttl} | {2, why} | {-1}
if redis.call('EXISTS', KEYS[1]) == 0 then return {-1} end
local met, why = expectations(3)
if not met then return {2, why} end
local lease = redis.call('GET', KEYS[2])
if lease and lease ~= ARGV[1] then return {0, lease, redis.call('PTTL', KEYS[2])} end
redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[2])
local t = now()
redis.call('HSET', KEYS[1], 'heartbeat_at', stamp(t), 'moved_at', stamp(t))  -- a step begins: nothing moved yet
redis.call('HINCRBY', KEYS[1], 'step_starts', 1)
return {1, redis.call('HGETALL', KEYS[1]), stamp(t)}
