-- Bulk enqueue: create many queued jobs and put each new one's start message on the broker's queue, in
-- one call (the broker and the job store are one Redis). KEYS: as every job script, with 1, 2 and 14
-- (the job's record, lease and revocation) left for this script to fill in for each job, then 15 the
-- queue's list. ARGV: keep_done_s, keep_failed_s, the record key prefix, the lease key prefix, the
-- revocation key prefix, then for each job its id, its start message (kombu's JSON) and its fields (a
-- JSON object of field -> value). For each job, in order: {1, now} or {0, spec_hash, state} (an id in use:
-- no message).
local results = {}
for i = 6, #ARGV, 3 do
  local id = ARGV[i]
  KEYS[1], KEYS[2], KEYS[14] = ARGV[3] .. id, ARGV[4] .. id, ARGV[5] .. id
  local fields = {}
  for field, v in pairs(cjson.decode(ARGV[i + 2])) do
    fields[#fields + 1] = field
    fields[#fields + 1] = v
  end
  local created = create_job(id, fields, ARGV[1], ARGV[2])
  if created[1] == 1 then redis.call('LPUSH', KEYS[15], ARGV[i + 1]) end
  results[#results + 1] = created
end
return results
