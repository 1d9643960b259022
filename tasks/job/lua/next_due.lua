-- The pump's next wake-up: KEYS[1] the delayed set. Seconds until its earliest step is due on Redis's
-- clock (0 when one is due already), or nil when no step waits.
local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
if #first == 0 then return false end
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
return string.format('%.6f', math.max(0, tonumber(first[2]) - now))
