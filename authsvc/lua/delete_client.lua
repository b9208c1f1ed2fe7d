-- KEYS: client, ids. ARGV: client id. Returns 1 when it existed.
redis.call('SREM', KEYS[2], ARGV[1])
return redis.call('DEL', KEYS[1])
