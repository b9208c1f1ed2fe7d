-- KEYS: session, meta, sessions index, proof (only with a DPoP proof).
-- ARGV: sid, now_ms, exp_ms, jti, ajti, iat, meta, auth_ms (the session's not-before),
-- client id, scope, access-token lifetime (s), the client's transports (space-separated)
-- (client id '': none of the four), jkt (the key the session is bound to, '' for a
-- bearer session), proof_ttl_ms, the attempt id (lib/proof.lua).
-- Returns 1, or 0 when the login's proof was already seen (nothing is written).
-- The index's TTL only ever grows: it must outlive every session it lists.
if KEYS[4] and not remember_proof(KEYS[4], ARGV[15], ARGV[14]) then return 0 end
local sid, now, exp = ARGV[1], ARGV[2], ARGV[3]
redis.call('HSET', KEYS[1], 'created', now, 'auth', ARGV[8], 'last', now, 'exp', exp,
           'jti', ARGV[4], 'ajti', ARGV[5], 'iat', ARGV[6])
if ARGV[9] ~= '' then
  redis.call('HSET', KEYS[1], 'cid', ARGV[9], 'scope', ARGV[10], 'attl', ARGV[11],
             'tr', ARGV[12])
end
if ARGV[13] ~= '' then redis.call('HSET', KEYS[1], 'jkt', ARGV[13]) end
redis.call('PEXPIREAT', KEYS[1], exp)
redis.call('SET', KEYS[2], ARGV[7], 'PXAT', exp)
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now)
redis.call('ZADD', KEYS[3], exp, sid)
local latest = redis.call('ZRANGE', KEYS[3], -1, -1, 'WITHSCORES')
redis.call('PEXPIREAT', KEYS[3], latest[2])
return 1
