-- The pump: KEYS[1] the delayed set, KEYS[2] the taken set, KEYS[3] steps it cannot read (set aside,
-- never returned: one bad member must not stop every other job's due steps); ARGV: limit, record key prefix, how
-- long a taken step may stay unconfirmed. Takes the steps that are due (each once, whichever worker
-- asks) into the taken set and notes their hand-off on their records; the pump confirms each one
-- it published (``JobStore.confirm``). A step taken longer ago and never confirmed (the script ran but its
-- reply never reached the pump: a command the network delivered late; or the pump died) is due
-- again, so a lost reply delays a step instead of losing it. Also returns the seconds until the earliest
-- step left in the set is due ('' when none is left), when the pump should look again.
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local stale = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now - tonumber(ARGV[3]), 'LIMIT', 0, tonumber(ARGV[1]))
for _, member in ipairs(stale) do
  redis.call('ZREM', KEYS[2], member)
  redis.call('ZADD', KEYS[1], now, member)
end
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[1]))
local taken = {}
for _, member in ipairs(due) do
  redis.call('ZREM', KEYS[1], member)
  local ok, step = pcall(cjson.decode, member)
  local id = ok and type(step) == 'table' and step.job_id
  if type(id) == 'string' then
    redis.call('ZADD', KEYS[2], now, member)
    local key = ARGV[2] .. id
    if redis.call('EXISTS', key) == 1 then redis.call('HSET', key, 'handoff_at', string.format('%.6f', now)) end
    taken[#taken + 1] = member
  else
    redis.call('ZADD', KEYS[3], now, member)
  end
end
local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')  -- the earliest step left: when to look again
local next_in = ''
if #first > 0 then next_in = string.format('%.6f', math.max(0, tonumber(first[2]) - now)) end
return {string.format('%.6f', now), taken, next_in}
