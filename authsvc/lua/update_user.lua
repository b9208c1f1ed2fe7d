-- KEYS: user. ARGV: field, value. HSET only while the user exists: a write racing a
-- delete must not bring the account back as a hash with no TTL and no username entry.
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return 1
