-- KEYS: denied, session, user. ARGV: the presented access jti.
-- Returns {status, username}. The first time the session's current access token is
-- presented, the pair is marked used (one HSET, once per rotation): from then on a
-- replay of the parent refresh token is reuse, not a lost reply (see rotate.lua).
if redis.call('EXISTS', KEYS[1]) == 1 then return {'denied'} end
local s = redis.call('HMGET', KEYS[2], 'auth', 'ajti', 'used')
if not s[1] then return {'gone'} end
local reason, u = dead_reason(KEYS[3], s[1])
if reason then return {reason} end
if s[2] == ARGV[1] and s[3] ~= '1' then redis.call('HSET', KEYS[2], 'used', '1') end
return {'ok', u[1]}
