-- KEYS: session, user. ARGV: presented_jti, now_ms, idle_ms, grace_ms.
-- Returns {username, jkt} when /refresh would hand the jti a pair: the session's live
-- current refresh token, or its parent where rotate.lua gives the parent the issued
-- pair (a bound session: always; a bearer one: within the grace window). Else false.
local s = redis.call('HMGET', KEYS[1], 'jti', 'last', 'auth', 'pjti', 'rot', 'jkt')
if not s[1] then return false end
local jkt = s[6] or ''
if s[1] ~= ARGV[1] then
  if s[4] ~= ARGV[1] then return false end
  local grace = tonumber(ARGV[4])
  if jkt == '' and not (grace > 0 and tonumber(ARGV[2]) - tonumber(s[5]) <= grace) then
    return false
  end
end
if tonumber(ARGV[2]) - tonumber(s[2]) > tonumber(ARGV[3]) then return false end
local reason, u = dead_reason(KEYS[2], s[3])
if reason then return false end
return {u[1], jkt}
