-- ARGV: keep_done_s, keep_failed_s, job id, then field pairs (a 'state' other than queued is
-- where the record starts, e.g. a spec rejected at once). {1, now} or {0, spec_hash, state}.
if redis.call('EXISTS', KEYS[1]) == 1 then
  return {0, redis.call('HGET', KEYS[1], 'spec_hash') or '', redis.call('HGET', KEYS[1], 'state')}
end
local t = now()
-- an id used again after its record expired: what the old job left in the indexes goes first
for k = 4, 11 do redis.call('ZREM', KEYS[k], ARGV[3]) end
redis.call('ZREM', KEYS[13], ARGV[3])
redis.call('HSET', KEYS[1], 'job_id', ARGV[3], 'state', 'queued', 'created_at', stamp(t), 'handoff_at', stamp(t))
local new = write(4, t)
redis.call('ZADD', KEYS[3], t, ARGV[3])
redis.call('ZADD', KEYS[STATE_KEY.queued], t, ARGV[3])
if new and new ~= 'queued' then moved('queued', new, t, ARGV[1], ARGV[2]) end
return {1, stamp(t)}
