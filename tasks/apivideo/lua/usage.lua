-- How much of one class's budget is in hand (tasks/apivideo/limiter.py): {admitted in the last window,
-- tickets waiting for a slot, the limit (0: not known yet)}.
-- KEYS: 1 state, 2 the last minute's admissions, 4 the waiting tickets (3 and 5 unused)
-- ARGV: 1 configured limit (0: the learned one), 2 the window (s)
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - tonumber(ARGV[2]))
local limit = tonumber(ARGV[1])
if limit <= 0 then limit = tonumber(redis.call('HGET', KEYS[1], 'limit') or '0') end
return {redis.call('ZCARD', KEYS[2]), redis.call('ZCARD', KEYS[4]), limit}
