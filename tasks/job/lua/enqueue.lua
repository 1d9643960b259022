-- Bulk enqueue: create many queued jobs and put each new one's start message on the broker's queue, in
-- one call (the broker and the job store are one Redis). KEYS: as every job script, with 1, 2 and 14
-- (the job's record, lease and revocation) left for this script to fill in for each job, then 15 the
-- queue's list. ARGV: keep_done_s, keep_failed_s, the record key prefix, the lease key prefix, the
-- revocation key prefix, then for each job its id, its start message (kombu's JSON) and its fields
-- (field, value, field, value..., joined by NUL bytes, which no field or value holds). For each job, in
-- order: '' (created, its message pushed) or its spec hash and state joined by a newline (an id in use:
-- no message).
local function split(text)
  local out, from = {}, 1
  while true do
    local at = string.find(text, '\0', from, true)
    if not at then
      out[#out + 1] = string.sub(text, from)
      return out
    end
    out[#out + 1] = string.sub(text, from, at - 1)
    from = at + 1
  end
end

local results = {}
for i = 6, #ARGV, 3 do
  local id = ARGV[i]
  KEYS[1], KEYS[2], KEYS[14] = ARGV[3] .. id, ARGV[4] .. id, ARGV[5] .. id
  local created = create_job(id, split(ARGV[i + 2]), ARGV[1], ARGV[2])
  if created[1] == 1 then
    redis.call('LPUSH', KEYS[15], ARGV[i + 1])
    results[#results + 1] = ''
  else
    results[#results + 1] = created[2] .. '\n' .. created[3]
  end
end
return results
