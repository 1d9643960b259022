-- What one api.video answer says of its class's window (tasks/apivideo/limiter.py).
-- KEYS: 1 the class's state (hash: tat, limit, blocked_until)
-- ARGV: 1 the limit to learn ('' none), 2 the answer's status, 3 X-RateLimit-Remaining ('' none),
--       4 X-RateLimit-Retry-After in seconds ('' none), 5 the configured limit (0 none), 6 the spacing
--       margin (s), 7 the window (s)
-- A 429 or Remaining 0 holds every worker until the window resets; fewer requests remaining than this
-- fleet would send before the reset (another client spends the same budget) move the next slot later,
-- so the rest fit before the reset.
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
if ARGV[1] ~= '' then redis.call('HSET', KEYS[1], 'limit', ARGV[1]) end
if ARGV[4] ~= '' then
  local reset = now + tonumber(ARGV[4])
  local remaining = tonumber(ARGV[3] ~= '' and ARGV[3] or '-1')
  if ARGV[2] == '429' or remaining == 0 then
    local blocked = tonumber(redis.call('HGET', KEYS[1], 'blocked_until') or '0')
    if reset > blocked then redis.call('HSET', KEYS[1], 'blocked_until', tostring(reset)) end
  elseif remaining > 0 then
    local limit = tonumber(ARGV[5])
    if limit <= 0 then limit = tonumber(redis.call('HGET', KEYS[1], 'limit') or '0') end
    if limit > 0 then
      local spacing = (tonumber(ARGV[7]) + tonumber(ARGV[6])) / limit
      local floor = reset - remaining * spacing
      local tat = tonumber(redis.call('HGET', KEYS[1], 'tat') or '0')
      if floor > tat then redis.call('HSET', KEYS[1], 'tat', tostring(floor)) end
    end
  end
end
redis.call('EXPIRE', KEYS[1], 86400)
return 1
