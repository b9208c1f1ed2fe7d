-- KEYS: denied, session, user, proof (only with a DPoP proof).
-- ARGV: the presented access jti, the proof key's thumbprint (jkt, '' without a
-- proof), how long to remember the proof (ms), the attempt id (lib/proof.lua).
-- Returns {status, username}. A session bound to a key (its 'jkt') admits only proofs
-- by that key; a proof's hashed jti is remembered (SET NX PX) for as long as the proof
-- could be accepted, so the same proof twice is a replay: all in this one round trip.
if redis.call('EXISTS', KEYS[1]) == 1 then return {'denied'} end
local s = redis.call('HMGET', KEYS[2], 'auth', 'jkt')
if not s[1] then return {'gone'} end
local reason, u = dead_reason(KEYS[3], s[1])
if reason then return {reason} end
if (s[2] or '') ~= (ARGV[2] or '') then return {'key_mismatch'} end
if KEYS[4] and not remember_proof(KEYS[4], ARGV[4], ARGV[3]) then
  return {'replay'}
end
return {'ok', u[1]}
