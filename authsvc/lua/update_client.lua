-- KEYS: client. ARGV: field, value, ... Returns 0 (writing nothing) when it does not
-- exist: an update racing a delete must not bring the client back half-written.
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV))
return 1
