-- A slot of one account's budget for one request class, paced and shared fairly (tasks/apivideo/limiter.py).
-- KEYS: 1 state (hash: tat, vclock, limit, blocked_until), 2 the last minute's admissions (zset),
--       3 each turn's next virtual start (hash), 4 the tickets waiting for a slot (zset: ticket -> when it
--       comes back), 5 the same tickets in fair order (zset: ticket -> its virtual start, bulk after all)
-- ARGV: 1 configured limit (0: the learned one), 2 the turn ("0|tenant" interactive, "1|tenant" bulk),
--       3 its weight, 4 a unique id for the admission log, 5 the spacing margin (s), 6 how close a waiter's
--       return must be to hold the slot for it (s), 7 how long past its return a waiter is forgotten (s),
--       8 the window (60 s), 9 the ticket (one per job: its place in line is kept across its asks)
-- Returns '0' (go now) or the seconds to wait before asking again.
--
-- Pacing: one slot every (window + margin) / limit seconds, never a burst, so no window of arrivals at
-- api.video, fixed or sliding, holds more than the limit while requests arrive less than the margin after
-- their admission. Fairness (start-time fair queueing): a ticket gets a virtual start when it first asks,
-- its turn's next one (or the clock of the last admission, if later), and its turn's next start moves on by
-- 1 / weight; slots go in the order of virtual starts, interactive before bulk. A ticket is told to come
-- back when its place in line is due (those ahead times the spacing), so a backlog waits in the delayed set
-- spread over time, not in the broker's queue; a free slot goes to whoever asks unless a ticket ahead is
-- back to take it.
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

local turn, ticket = ARGV[2], ARGV[9]
local bulk = string.sub(turn, 1, 1) == '1' and 1e12 or 0
local spacing = (window + tonumber(ARGV[5])) / limit
local blocked = tonumber(redis.call('HGET', KEYS[1], 'blocked_until') or '0')
local tat = math.max(tonumber(redis.call('HGET', KEYS[1], 'tat') or '0'), now, blocked)
-- admissions logged before the limit was known (or by a fleet that did not know it) count too: the next
-- one is a spacing after the last, and never makes the window hold more than the limit
local logged = redis.call('ZCARD', KEYS[2])
if logged > 0 then
  local last = redis.call('ZRANGE', KEYS[2], -1, -1, 'WITHSCORES')
  tat = math.max(tat, tonumber(last[2]) + spacing)
  if logged >= limit then
    local nth = redis.call('ZRANGE', KEYS[2], logged - limit, logged - limit, 'WITHSCORES')
    tat = math.max(tat, tonumber(nth[2]) + window + tonumber(ARGV[5]))
  end
end
local vclock = tonumber(redis.call('HGET', KEYS[1], 'vclock') or '0')

local gone = redis.call('ZRANGEBYSCORE', KEYS[4], '-inf', now - tonumber(ARGV[7]))
if #gone > 0 then  -- tickets whose jobs never came back
  redis.call('ZREM', KEYS[4], unpack(gone))
  redis.call('ZREM', KEYS[5], unpack(gone))
end

local place = redis.call('ZSCORE', KEYS[5], ticket)
local start
if place then
  start = tonumber(place) - bulk
else
  start = math.max(tonumber(redis.call('HGET', KEYS[3], turn) or '0'), vclock)
  redis.call('HSET', KEYS[3], turn, tostring(start + 1 / tonumber(ARGV[3])))
  redis.call('EXPIRE', KEYS[3], day)
  place = start + bulk
end

local ahead = redis.call('ZCOUNT', KEYS[5], '-inf', '(' .. place)
local present = false
for _, other in ipairs(redis.call('ZRANGEBYSCORE', KEYS[5], '-inf', '(' .. place, 'LIMIT', 0, 16)) do
  local back = redis.call('ZSCORE', KEYS[4], other)
  if back and tonumber(back) <= now + tonumber(ARGV[6]) then present = true end
end

if tat <= now and not present then
  redis.call('HSET', KEYS[1], 'tat', tostring(tat + spacing), 'vclock', tostring(math.max(vclock, start)))
  redis.call('ZREM', KEYS[4], ticket)
  redis.call('ZREM', KEYS[5], ticket)
  redis.call('EXPIRE', KEYS[1], day)
  admit()
  return '0'
end

local wait = math.max(tat - now, 0) + ahead * spacing
if wait <= 0 then wait = spacing end  -- a ticket ahead of this one is back for this slot
redis.call('ZADD', KEYS[4], now + wait, ticket)
redis.call('ZADD', KEYS[5], place, ticket)
redis.call('EXPIRE', KEYS[4], day)
redis.call('EXPIRE', KEYS[5], day)
return tostring(wait)
