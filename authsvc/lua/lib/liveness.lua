-- Prepended to the scripts that call dead_reason: _script(..., needs=("liveness",)).
-- Session liveness, shared by every script that needs it. Returns nil when alive,
-- otherwise the reason. `s_auth` is the session's not-before (ms). A session whose
-- not-before equals the user's (same millisecond) counts as revoked: a revocation is
-- never missed, at the price of a rare spurious logout for a login racing it. Also
-- returns the user fields it read ({username, disabled, nbf, roles}), so callers need
-- no second read.
local function dead_reason(user_key, s_auth)
  local u = redis.call('HMGET', user_key, 'username', 'disabled', 'nbf', 'roles')
  if not u[1] then return 'revoked', u end
  if u[2] == '1' then return 'revoked', u end
  if tonumber(u[3] or '0') >= tonumber(s_auth) then return 'revoked', u end
  return nil, u
end
