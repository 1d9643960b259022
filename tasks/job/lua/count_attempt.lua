-- Count one more delivery attempt of the job's webhook: its count, or 0 when the record is gone (a
-- record that expired is never made anew by counting). KEYS: 1 the record.
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
return redis.call('HINCRBY', KEYS[1], 'callback_attempts', 1)
