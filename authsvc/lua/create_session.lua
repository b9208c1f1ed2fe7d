-- KEYS: session, meta, sessions index.
-- ARGV: sid, now_ms, exp_ms, jti, ajti, iat, meta, auth_ms (the session's not-before),
-- client id, scope, access-token lifetime (s), the client's transports (space-separated)
-- (client id '': none of the four).
-- The index's TTL only ever grows: it must outlive every session it lists.
local sid, now, exp = ARGV[1], ARGV[2], ARGV[3]
redis.call('HSET', KEYS[1], 'created', now, 'auth', ARGV[8], 'last', now, 'exp', exp,
           'jti', ARGV[4], 'ajti', ARGV[5], 'iat', ARGV[6])
if ARGV[9] ~= '' then
  redis.call('HSET', KEYS[1], 'cid', ARGV[9], 'scope', ARGV[10], 'attl', ARGV[11],
             'tr', ARGV[12])
end
redis.call('PEXPIREAT', KEYS[1], exp)
redis.call('SET', KEYS[2], ARGV[7], 'PXAT', exp)
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now)
redis.call('ZADD', KEYS[3], exp, sid)
local latest = redis.call('ZRANGE', KEYS[3], -1, -1, 'WITHSCORES')
redis.call('PEXPIREAT', KEYS[3], latest[2])
return 1
