-- KEYS: device-code record, user-code index entry, pending index (all in the {device} slot).
-- ARGV: now_ms, exp_ms, user code, then field/value pairs of the record.
-- Returns 1, or 0 when the user code is taken (the caller draws another; nothing written).
if redis.call('SET', KEYS[2], KEYS[1], 'NX', 'PXAT', ARGV[2]) == false then return 0 end
redis.call('HSET', KEYS[1], 'status', 'pending', 'ucode', ARGV[3], 'created', ARGV[1],
           'exp', ARGV[2], unpack(ARGV, 4))
redis.call('PEXPIREAT', KEYS[1], ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', ARGV[1])
redis.call('ZADD', KEYS[3], ARGV[2], KEYS[1])
local latest = redis.call('ZRANGE', KEYS[3], -1, -1, 'WITHSCORES')
redis.call('PEXPIREAT', KEYS[3], latest[2])
return 1
