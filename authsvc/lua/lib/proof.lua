-- Prepended to the scripts that call remember_proof: _script(..., needs=("proof",)).
-- DPoP replay memory (RFC 9449 section 11.1). Remembers a proof's hashed jti for `ttl`
-- ms, under the id of this attempt; true when the proof is new, or when this very
-- command already ran (redis-py resent it after a dropped connection: same attempt id).
-- False: another request already presented this proof, a replay.
local function remember_proof(key, attempt, ttl)
  if redis.call('SET', key, attempt, 'NX', 'PX', ttl) then return true end
  return redis.call('GET', key) == attempt
end
