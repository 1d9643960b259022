-- A slot of one account's budget for one request class, paced and shared fairly (tasks/apivideo/limiter.py).
-- KEYS: 1 state (hash: tat, vclock, limit, blocked_until), 2 the last minute's admissions (zset),
--       3 each turn's virtual time (hash), 4 the turns waiting for a slot (zset: turn -> when it comes back)
-- ARGV: 1 configured limit (0: the learned one), 2 the turn ("0|tenant" interactive, "1|tenant" bulk),
--       3 its weight, 4 a unique id for the admission log, 5 the spacing margin (s), 6 how close a waiter's
--       return must be to hold the slot for it (s), 7 how long past its return a waiter is forgotten (s),
--       8 the window (60 s)
-- Returns '0' (go now) or the seconds to wait before asking again.
--
-- Pacing: one slot every (window + margin) / limit seconds, never a burst, so no window of arrivals at
-- api.video, fixed or sliding, holds more than the limit while requests arrive less than the margin after
-- their admission. Fairness: each turn (tenant and priority) carries a virtual time that grows by
-- 1 / weight per slot it took (start-time fair queueing); a free slot goes to the waiting turn with the
-- best priority and the earliest virtual time that is back to take it, else to whoever asks.
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local window = tonumber(ARGV[8])
local day = 86400
local limit = tonumber(ARGV[1])
if limit <= 0 then limit = tonumber(redis.call('HGET', KEYS[1], 'limit') or '0') end
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - window)

local function admit()
  redis.call('ZADD', KEYS[2], now, ARGV[4])
  redis.call('PEXPIRE', KEYS[2], math.floor(window * 1000) + 1000)
end

if limit <= 0 then  -- not known yet: every request is logged, and counted once it is learned
  admit()
  return '0'
end

local me = ARGV[2]
local spacing = (window + tonumber(ARGV[5])) / limit
local blocked = tonumber(redis.call('HGET', KEYS[1], 'blocked_until') or '0')
local tat = math.max(tonumber(redis.call('HGET', KEYS[1], 'tat') or '0'), now, blocked)
redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', now - tonumber(ARGV[7]))
local vclock = tonumber(redis.call('HGET', KEYS[1], 'vclock') or '0')

local function tag(turn)
  return math.max(tonumber(redis.call('HGET', KEYS[3], turn) or '0'), vclock)
end

local mine = tag(me)
local ahead, present = 0, false
local waiting = redis.call('ZRANGE', KEYS[4], 0, -1, 'WITHSCORES')
for i = 1, #waiting, 2 do
  local turn, back = waiting[i], tonumber(waiting[i + 1])
  if turn ~= me then
    local better = string.sub(turn, 1, 1) < string.sub(me, 1, 1)
    local same = string.sub(turn, 1, 1) == string.sub(me, 1, 1)
    if better or (same and tag(turn) < mine) then
      ahead = ahead + 1
      if back <= now + tonumber(ARGV[6]) then present = true end
    end
  end
end

if tat <= now and not present then
  redis.call('HSET', KEYS[1], 'tat', tostring(tat + spacing), 'vclock', tostring(mine))
  redis.call('HSET', KEYS[3], me, tostring(mine + 1 / tonumber(ARGV[3])))
  redis.call('ZREM', KEYS[4], me)
  for k = 1, 4 do if k ~= 2 then redis.call('EXPIRE', KEYS[k], day) end end
  admit()
  return '0'
end

local wait = math.max(tat - now, 0) + ahead * spacing
if wait <= 0 then wait = spacing end  -- a turn ahead of this one is back for this slot
local back = now + wait
local known = redis.call('ZSCORE', KEYS[4], me)
if not known or tonumber(known) > back then redis.call('ZADD', KEYS[4], back, me) end
redis.call('EXPIRE', KEYS[4], day)
return tostring(wait)
