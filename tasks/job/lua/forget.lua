-- Undo a create whose start message could not be sent: only a queued job nobody picked up.
if redis.call('HGET', KEYS[1], 'state') ~= 'queued' or redis.call('HEXISTS', KEYS[1], 'heartbeat_at') == 1 then
  return 0
end
local id = redis.call('HGET', KEYS[1], 'job_id')
redis.call('DEL', KEYS[1], KEYS[2])
redis.call('ZREM', KEYS[3], id)
redis.call('ZREM', KEYS[STATE_KEY.queued], id)
return 1
