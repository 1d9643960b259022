"""The job store's Lua scripts: every change to a job is one of these, atomic and one round trip.

Each script gets the same keys (``KEYS``, built by ``tasks.job.store.job_keys``)::

    1 the record vuq:job:{id}     2 its lease vuq:lease:{id}      3 every job, by creation
    4-9 one index per state (queued uploading finalizing done failed cancelled), by creation
    10 expiry (id -> when its record goes)   11 the webhook outbox (id -> when it is due)
    12 delayed steps (member -> when to publish it)

so the indexes move in the same script that changes a state and can never disagree with
the records. Times are Redis's own (``TIME``): a value ``NOW`` (a NUL, then ``@now``: no text a
person writes starts so) is written as that moment on Redis's clock, so no host's clock is ever
compared with another's.
"""

from __future__ import annotations

PRELUDE = """
local STATE_KEY = {queued=4, uploading=5, finalizing=6, done=7, failed=8, cancelled=9}
local FINAL = {done=true, failed=true, cancelled=true}

local function now()
  local t = redis.call('TIME')
  return tonumber(t[1]) + tonumber(t[2]) / 1000000
end

local function stamp(t) return string.format('%.6f', t) end

-- NUL '@now' becomes this moment on Redis's clock; anything else stays
local function value(v, t)
  if v == '\0@now' then return stamp(t) end
  return v
end

-- ARGV[at] expectations follow as field, n, allowed1..n; returns met, why, next index
local function expectations(at)
  local i = at + 1
  for _ = 1, tonumber(ARGV[at]) do
    local current = redis.call('HGET', KEYS[1], ARGV[i]) or ''
    local k = tonumber(ARGV[i + 1])
    local ok = false
    for j = 1, k do if current == ARGV[i + 1 + j] then ok = true end end
    if not ok then return false, ARGV[i] .. ' is ' .. current, i end
    i = i + 2 + k
  end
  return true, '', i
end

-- after the record's state changed from old to new: move its index entry; a job that ended
-- gets its expiry (retention), loses its token if done or cancelled, and owes its webhook
local function moved(old, new, t, keep_done, keep_failed)
  local id = redis.call('HGET', KEYS[1], 'job_id')
  local created = redis.call('HGET', KEYS[1], 'created_at') or stamp(t)
  if old and STATE_KEY[old] then redis.call('ZREM', KEYS[STATE_KEY[old]], id) end
  redis.call('ZADD', KEYS[STATE_KEY[new]], created, id)
  redis.call('HSET', KEYS[1], 'step_starts', '0')
  if FINAL[new] then
    redis.call('HSET', KEYS[1], 'ended_at', stamp(t))
    if new ~= 'failed' then redis.call('HDEL', KEYS[1], 'secret:token') end
    local keep = tonumber(new == 'failed' and keep_failed or keep_done)
    if keep > 0 then
      -- the index entry is due the very millisecond the record goes, never a moment after it
      local expires_ms = math.floor((t + keep) * 1000)
      redis.call('PEXPIREAT', KEYS[1], expires_ms)
      redis.call('ZADD', KEYS[10], expires_ms / 1000, id)
    end
    if redis.call('HGET', KEYS[1], 'webhook') == '1' then redis.call('ZADD', KEYS[11], t, id) end
  elseif FINAL[old] then
    redis.call('PERSIST', KEYS[1])
    redis.call('ZREM', KEYS[10], id)
    redis.call('HDEL', KEYS[1], 'ended_at')
  end
end

-- ARGV[i..] as field/value pairs (times resolved), plus updated_at; returns the new state if set
local function write(i, t)
  local fields, new, cursor = {}, nil, false
  while i < #ARGV do
    local f, v = ARGV[i], value(ARGV[i + 1], t)
    if f == 'state' then new = v end
    if f == 'next_chunk' then cursor = true end
    fields[#fields + 1] = f
    fields[#fields + 1] = v
    i = i + 2
  end
  fields[#fields + 1] = 'updated_at'
  fields[#fields + 1] = stamp(t)
  redis.call('HSET', KEYS[1], unpack(fields))
  if cursor then redis.call('HSET', KEYS[1], 'step_starts', '0') end
  return new
end
"""

# ARGV: keep_done_s, keep_failed_s, job id, then field pairs (a 'state' other than queued is
# where the record starts, e.g. a spec rejected at once). {1, now} or {0, spec_hash, state}.
CREATE = PRELUDE + """
if redis.call('EXISTS', KEYS[1]) == 1 then
  return {0, redis.call('HGET', KEYS[1], 'spec_hash') or '', redis.call('HGET', KEYS[1], 'state')}
end
local t = now()
-- an id used again after its record expired: what the old job left in the indexes goes first
for k = 4, 11 do redis.call('ZREM', KEYS[k], ARGV[3]) end
redis.call('HSET', KEYS[1], 'job_id', ARGV[3], 'state', 'queued', 'created_at', stamp(t), 'handoff_at', stamp(t))
local new = write(4, t)
redis.call('ZADD', KEYS[3], t, ARGV[3])
redis.call('ZADD', KEYS[STATE_KEY.queued], t, ARGV[3])
if new and new ~= 'queued' then moved('queued', new, t, ARGV[1], ARGV[2]) end
return {1, stamp(t)}
"""

# Undo a create whose start message could not be sent: only a queued job nobody picked up.
FORGET = PRELUDE + """
if redis.call('HGET', KEYS[1], 'state') ~= 'queued' or redis.call('HEXISTS', KEYS[1], 'heartbeat_at') == 1 then
  return 0
end
local id = redis.call('HGET', KEYS[1], 'job_id')
redis.call('DEL', KEYS[1], KEYS[2])
redis.call('ZREM', KEYS[3], id)
redis.call('ZREM', KEYS[STATE_KEY.queued], id)
return 1
"""

# ARGV: holder, ttl_ms, expectations... -> {1, record, now} | {0, holder, pttl} | {2, why} | {-1}
CLAIM = PRELUDE + """
if redis.call('EXISTS', KEYS[1]) == 0 then return {-1} end
local met, why = expectations(3)
if not met then return {2, why} end
local lease = redis.call('GET', KEYS[2])
if lease and lease ~= ARGV[1] then return {0, lease, redis.call('PTTL', KEYS[2])} end
redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[2])
local t = now()
redis.call('HSET', KEYS[1], 'heartbeat_at', stamp(t))
redis.call('HINCRBY', KEYS[1], 'step_starts', 1)
return {1, redis.call('HGETALL', KEYS[1]), stamp(t)}
"""

# ARGV: holder, ttl_ms, streamed bytes ('' none), expectations...
# 1 renewed, 2 reclaimed (the lease had lapsed and nobody took it; the record is where the
# step expects it), 0 lost (another holder, or the record moved on), -1 no such job.
# A holder that released the lease (``released_by``) never takes it back: a renewal the network
# delivers after its step ended must not hold the job for a step that no longer runs.
RENEW = PRELUDE + """
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
if ARGV[3] ~= '' then redis.call('HSET', KEYS[1], 'chunk_bytes', ARGV[3]) end
return result
"""

# ARGV: keep_done_s, keep_failed_s, holder ('' none), flags, ttl_ms, expectations..., field pairs.
# flags: r release the lease; c reclaim a lapsed lease nobody took; x refuse while anyone holds it.
# {1, now} written, {0, why} fenced off, {-1} no such job.
UPDATE = PRELUDE + """
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
"""

# Defer or retry a step: fenced like UPDATE (holder, reclaim), the lease released, the step
# put in the delayed set for ARGV[delay] seconds on Redis's clock, wake_at recorded.
# ARGV: holder, delay_s, member, retry ('1' counts a retry), reason, expectations...
SCHEDULE = PRELUDE + """
if redis.call('EXISTS', KEYS[1]) == 0 then return {-1, 'no such job'} end
local lease = redis.call('GET', KEYS[2])
if lease and lease ~= ARGV[1] then return {0, 'the job is held by ' .. lease} end
local met, why = expectations(6)
if not met then return {0, why} end
local due = now() + tonumber(ARGV[2])
redis.call('HSET', KEYS[1], 'wake_at', stamp(due), 'step_starts', '0', 'updated_at', stamp(now()))
if ARGV[4] == '1' then
  redis.call('HINCRBY', KEYS[1], 'retries', 1)
  redis.call('HSET', KEYS[1], 'last_retry_reason', ARGV[5])
end
if lease then redis.call('DEL', KEYS[2]) end
redis.call('HSET', KEYS[1], 'released_by', ARGV[1])
redis.call('ZADD', KEYS[12], due, ARGV[3])
return {1, stamp(due)}
"""

# The pump: KEYS[1] the delayed set, KEYS[2] the taken set; ARGV: limit, record key prefix, how
# long a taken step may stay unconfirmed. Takes the steps that are due (each once, whichever worker
# asks) into the taken set and notes their hand-off on their records; the pump confirms each one
# it published (``JobStore.confirm``). A step taken longer ago and never confirmed (the script ran but its
# reply never reached the pump: a command the network delivered late; or the pump died) is due
# again, so a lost reply delays a step instead of losing it.
POP_DUE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local stale = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now - tonumber(ARGV[3]), 'LIMIT', 0, tonumber(ARGV[1]))
for _, member in ipairs(stale) do
  redis.call('ZREM', KEYS[2], member)
  redis.call('ZADD', KEYS[1], now, member)
end
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[1]))
for _, member in ipairs(due) do
  redis.call('ZREM', KEYS[1], member)
  redis.call('ZADD', KEYS[2], now, member)
  local key = ARGV[2] .. cjson.decode(member).job_id
  if redis.call('EXISTS', key) == 1 then redis.call('HSET', key, 'handoff_at', string.format('%.6f', now)) end
end
return {string.format('%.6f', now), due}
"""

# Retention: forget the index entries of records that expired. KEYS: every-jobs index, the six
# state indexes, expiry, outbox; ARGV: limit, record key prefix. A record still there with a TTL
# (Redis expires it in the next millisecond) is looked at again then; one there without a TTL
# lives again (used anew) and keeps its entries. Returns how many were forgotten.
PRUNE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local due = redis.call('ZRANGEBYSCORE', KEYS[8], '-inf', now, 'LIMIT', 0, tonumber(ARGV[1]))
local pruned = 0
for _, id in ipairs(due) do
  local ttl = redis.call('PTTL', ARGV[2] .. id)
  if ttl > 0 then
    redis.call('ZADD', KEYS[8], now + ttl / 1000, id)
  elseif ttl == -1 then
    redis.call('ZREM', KEYS[8], id)
  else
    redis.call('ZREM', KEYS[8], id)
    for k = 1, 7 do redis.call('ZREM', KEYS[k], id) end
    redis.call('ZREM', KEYS[9], id)
    pruned = pruned + 1
  end
end
return pruned
"""

# Redis's clock, for the few comparisons made outside a script (janitor, listings, signatures).
NOW = """
local t = redis.call('TIME')
return string.format('%.6f', tonumber(t[1]) + tonumber(t[2]) / 1000000)
"""
