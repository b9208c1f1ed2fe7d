-- KEYS: user. ARGV: the hash that was verified, the new hash. Compare-and-set, so a
-- rehash on login never overwrites a password changed meanwhile.
if redis.call('HGET', KEYS[1], 'pw') ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'pw', ARGV[2])
return 1
