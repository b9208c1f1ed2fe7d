-- KEYS: user, session to keep (optional).
-- ARGV: now_ms, new password hash (optional), '1' to disable the account too,
-- the password hash the caller verified (optional: compare-and-set).
-- Returns 'ok'; 'gone' when there is no such user (nothing is written, so a user deleted
-- meanwhile is not recreated as a bare hash); when the stored hash is no longer the
-- verified one, nothing is written and the answer is 'revoked' if the kept session is
-- dead (an admin reset landed in between and ended it), else 'changed' (a rehash).
-- The not-before moves strictly past the old one: a revocation in the same millisecond
-- as an earlier one, or from a host whose clock lags, still ends every session that
-- existed before it (the kept session of a password change sits at old nbf + 1).
local u = redis.call('HMGET', KEYS[1], 'username', 'nbf', 'pw')
if not u[1] then return 'gone' end
local keep_alive = false
if KEYS[2] then
  -- Judge the kept session before moving nbf: a session that is already revoked
  -- (an earlier logout-all, a disable) must not come back to life.
  local auth = redis.call('HGET', KEYS[2], 'auth')
  keep_alive = auth ~= false and dead_reason(KEYS[1], auth) == nil
end
if ARGV[4] and ARGV[4] ~= '' then
  -- Our own hash already in place: a resent command (redis-py retries after a
  -- dropped connection) whose first run applied. Report success again.
  if u[3] == ARGV[2] then return 'ok' end
  if u[3] ~= ARGV[4] then return keep_alive and 'changed' or 'revoked' end
end
local nbf = math.max(tonumber(ARGV[1]), tonumber(u[2] or '0') + 1)
local fields = {'nbf', nbf}
if ARGV[2] and ARGV[2] ~= '' then table.insert(fields, 'pw'); table.insert(fields, ARGV[2]) end
if ARGV[3] == '1' then table.insert(fields, 'disabled'); table.insert(fields, '1') end
redis.call('HSET', KEYS[1], unpack(fields))
if keep_alive then redis.call('HSET', KEYS[2], 'auth', nbf + 1) end
return 'ok'
