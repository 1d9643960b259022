-- ARGV: keep_done_s, keep_failed_s, job id, then field pairs (see create_job in the prelude).
-- {1, now} or {0, spec_hash, state}.
local fields = {}
for k = 4, #ARGV do fields[#fields + 1] = ARGV[k] end
return create_job(ARGV[3], fields, ARGV[1], ARGV[2])
