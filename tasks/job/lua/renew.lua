-- ARGV: holder, ttl_ms, streamed bytes ('' none), expectations...; a change of streamed notes moved_at
-- 1 renewed, 2 reclaimed (the lease had lapsed and nobody took it; the record is where the
-- step expects it), 0 lost (another holder, or the record moved on), -1 no such job.
-- A holder that released the lease (``released_by``) never takes it back: a renewal the network
-- delivers after its step ended must not hold the job for a step that no longer runs.
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
local lease = redis.call('GET', KEYS[2])
local result = 1
if lease == ARGV[1] then
  redis.call('PEXPIRE', KEYS[2], ARGV[2])
elseif not lease and redis.call('HGET', KEYS[1], 'released_by') ~= ARGV[1] and expectations(4) then
  redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[2])
  result = 2
else
  return 0
end
redis.call('HSET', KEYS[1], 'heartbeat_at', stamp(now()))
if ARGV[3] ~= '' and redis.call('HGET', KEYS[1], 'chunk_bytes') ~= ARGV[3] then
  redis.call('HSET', KEYS[1], 'chunk_bytes', ARGV[3], 'moved_at', stamp(now()))  -- bytes moved (`vuq health`)
end
return result
