-- Registered clients. Both keys share the hash tag {clients}, so each script touches
-- one Redis Cluster slot.
-- KEYS: client, ids. ARGV: client id, field, value, ... Returns 0 (writing nothing)
-- when the id is taken.
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV, 2))
redis.call('SADD', KEYS[2], ARGV[1])
return 1
