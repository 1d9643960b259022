-- Redis's clock, for the few comparisons made outside a script (janitor, listings, signatures).
local t = redis.call('TIME')
return string.format('%.6f', tonumber(t[1]) + tonumber(t[2]) / 1000000)
