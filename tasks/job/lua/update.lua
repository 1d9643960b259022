-- ARGV: keep_done_s, keep_failed_s, holder ('' none), flags, ttl_ms, expectations..., field pairs.
-- flags: r release the lease; c reclaim a lapsed lease nobody took; x refuse while anyone holds it.
-- {1, now} written, {0, why} fenced off, {-1} no such job.
if redis.call('EXISTS', KEYS[1]) == 0 then return {-1, 'no such job'} end
local holder, flags = ARGV[3], ARGV[4]
local lease = redis.call('GET', KEYS[2])
if holder ~= '' and lease ~= holder then
  if lease then return {0, 'the job is held by ' .. lease} end
  if not string.find(flags, 'c', 1, true) then return {0, 'the lease lapsed'} end
  if redis.call('HGET', KEYS[1], 'released_by') == holder then return {0, 'the step released the lease'} end
elseif holder == '' and lease and string.find(flags, 'x', 1, true) then
  return {0, 'the job is held by ' .. lease}
end
local met, why, i = expectations(6)
if not met then return {0, why} end
local t = now()
local old = redis.call('HGET', KEYS[1], 'state')
local new = write(i, t)
if new and new ~= old then moved(old, new, t, ARGV[1], ARGV[2]) end
if holder ~= '' then
  if string.find(flags, 'r', 1, true) then
    if lease == holder then redis.call('DEL', KEYS[2]) end
    redis.call('HSET', KEYS[1], 'released_by', holder)
  elseif lease ~= holder then
    redis.call('SET', KEYS[2], holder, 'PX', ARGV[5])
  end
end
return {1, stamp(t)}
