-- Defer or retry a step: fenced like UPDATE (holder, reclaim), the lease released, the step
-- put in the delayed set for ARGV[delay] seconds on Redis's clock, wake_at and the member recorded.
-- ARGV: holder, delay_s, member, retry ('1' counts a retry), reason, expectations...
if redis.call('EXISTS', KEYS[1]) == 0 then return {-1, 'no such job'} end
local lease = redis.call('GET', KEYS[2])
if lease and lease ~= ARGV[1] then return {0, 'the job is held by ' .. lease} end
local met, why = expectations(6)
if not met then return {0, why} end
local due = now() + tonumber(ARGV[2])
redis.call('HSET', KEYS[1], 'wake_at', stamp(due), 'step_starts', '0', 'updated_at', stamp(now()))
if ARGV[4] == '1' then
  redis.call('HINCRBY', KEYS[1], 'retries', 1)
  redis.call('HSET', KEYS[1], 'last_retry_reason', ARGV[5])
end
if lease then redis.call('DEL', KEYS[2]) end
redis.call('HSET', KEYS[1], 'released_by', ARGV[1], 'wake_member', ARGV[3])  -- a finish wakes it early
redis.call('ZADD', KEYS[12], due, ARGV[3])
return {1, stamp(due)}
