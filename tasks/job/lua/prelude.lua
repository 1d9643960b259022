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
-- gets its expiry (retention), loses its token if done or cancelled, owes its webhook, and owes
-- the deletion of a token vuq minted for it (kept apart until then, however the job ended)
local function moved(old, new, t, keep_done, keep_failed)
  local id = redis.call('HGET', KEYS[1], 'job_id')
  local created = redis.call('HGET', KEYS[1], 'created_at') or stamp(t)
  if old and STATE_KEY[old] then redis.call('ZREM', KEYS[STATE_KEY[old]], id) end
  redis.call('ZADD', KEYS[STATE_KEY[new]], created, id)
  redis.call('HSET', KEYS[1], 'step_starts', '0')
  if FINAL[new] then
    redis.call('HSET', KEYS[1], 'ended_at', stamp(t))
    if redis.call('HGET', KEYS[1], 'token_minted') == '1' then
      local minted = redis.call('HGET', KEYS[1], 'secret:token')
      if minted then
        -- apart from the record, without a TTL: the record may expire before the token is deleted
        redis.call('HSET', KEYS[14], 'token', minted, 'account', redis.call('HGET', KEYS[1], 'account') or '')
        redis.call('ZADD', KEYS[13], t, id)
      end
      redis.call('HDEL', KEYS[1], 'secret:token', 'token_minted', 'token_expires_at')
    end
    if new ~= 'failed' then redis.call('HDEL', KEYS[1], 'secret:token') end
    local keep = tonumber(new == 'failed' and keep_failed or keep_done)
    if keep > 0 then
      -- the index entry is due the very millisecond the record goes, never a moment after it
      local expires_ms = math.floor((t + keep) * 1000)
      redis.call('PEXPIREAT', KEYS[1], expires_ms)
      redis.call('ZADD', KEYS[10], expires_ms / 1000, id)
    end
    if redis.call('HGET', KEYS[1], 'webhook') == '1' then
      redis.call('ZADD', KEYS[11], t, id)
      redis.call('HDEL', KEYS[1], 'callback', 'callback_attempts', 'callback_again')  -- owed anew
    end
  elseif FINAL[old] then
    redis.call('PERSIST', KEYS[1])
    redis.call('ZREM', KEYS[10], id)
    redis.call('HDEL', KEYS[1], 'ended_at')
  end
end

-- field/value pairs (times resolved) into the record, plus updated_at; returns the new state if set
local function write_pairs(given, t)
  local fields, new, cursor = {}, nil, false
  for i = 1, #given - 1, 2 do
    local f, v = given[i], value(given[i + 1], t)
    if f == 'state' then new = v end
    if f == 'next_chunk' then cursor = true end
    fields[#fields + 1] = f
    fields[#fields + 1] = v
  end
  fields[#fields + 1] = 'updated_at'
  fields[#fields + 1] = stamp(t)
  redis.call('HSET', KEYS[1], unpack(fields))
  if cursor then redis.call('HSET', KEYS[1], 'step_starts', '0') end
  return new
end

-- ARGV[i..] as field/value pairs: write_pairs
local function write(i, t)
  local given = {}
  for k = i, #ARGV do given[#given + 1] = ARGV[k] end
  return write_pairs(given, t)
end

-- a new queued job ``id`` (KEYS[1] its record) from field/value pairs (a 'state' other than queued
-- is where the record starts, e.g. a spec rejected at once); keep_done, keep_failed: retention.
-- {1, now} or, for an id in use, {0, spec_hash, state} and nothing changed
local function create_job(id, given, keep_done, keep_failed)
  if redis.call('EXISTS', KEYS[1]) == 1 then
    return {0, redis.call('HGET', KEYS[1], 'spec_hash') or '', redis.call('HGET', KEYS[1], 'state')}
  end
  local t = now()
  -- an id used again after its record expired: what the old job left in the indexes goes first
  -- (pruning forgets an id in every index at once: not in the index of every job, it is in none)
  if redis.call('ZSCORE', KEYS[3], id) then
    for k = 3, 11 do redis.call('ZREM', KEYS[k], id) end
  end
  redis.call('HSET', KEYS[1], 'job_id', id, 'state', 'queued', 'created_at', stamp(t), 'handoff_at', stamp(t))
  local new = write_pairs(given, t)
  redis.call('ZADD', KEYS[3], t, id)
  redis.call('ZADD', KEYS[STATE_KEY.queued], t, id)
  if new and new ~= 'queued' then moved('queued', new, t, keep_done, keep_failed) end
  return {1, stamp(t)}
end
