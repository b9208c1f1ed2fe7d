-- KEYS: known networks, shared bucket, this network's bucket.
-- ARGV: network, attempt id, known until (ms), now ms, most networks remembered.
-- After a success: the attempt is handed back (the shared bucket keeps the other
-- failures, so a success from a new network never hands a guesser fresh attempts), this
-- network's failures are forgiven, and the network is remembered. Idempotent.
redis.call('ZREM', KEYS[2], ARGV[2])
redis.call('DEL', KEYS[3])
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[4])
local extra = redis.call('ZCARD', KEYS[1]) - tonumber(ARGV[5])
if extra > 0 then redis.call('ZREMRANGEBYRANK', KEYS[1], 0, extra - 1) end
local latest = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
redis.call('PEXPIREAT', KEYS[1], latest[2])
return 1
