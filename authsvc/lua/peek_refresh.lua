-- KEYS: session, user. ARGV: presented_jti, now_ms, idle_ms.
-- Returns the username when the jti is the session's live current refresh token.
local s = redis.call('HMGET', KEYS[1], 'jti', 'last', 'auth')
if not s[1] or s[1] ~= ARGV[1] then return false end
if tonumber(ARGV[2]) - tonumber(s[2]) > tonumber(ARGV[3]) then return false end
local reason, u = dead_reason(KEYS[2], s[3])
if reason then return false end
return u[1]
