-- KEYS: session, meta, sessions, user, proof (only with a DPoP proof).
-- ARGV: sid, presented_jti, now_ms, grace_ms, idle_ms, new_jti, new_ajti, new_iat,
-- unused_ms (unused, kept for the argument order), scope ('' keeps the session's; else
-- a subset of it, which replaces it), transport (how the token came: 'body' or
-- 'cookie'), jkt (the proof key's thumbprint, '' without a proof), proof_ttl_ms (how
-- long to remember the proof's jti), the attempt id (lib/proof.lua).
-- Returns {status, jti, ajti, iat, exp_ms, roles, username, cid, scope, attl, jkt}: what
-- minting needs, so a refresh stays one round trip. A scope that is not a subset of the
-- session's is refused ('invalid_scope') and nothing changes; so is a transport the
-- session's client does not allow ('transport_not_allowed'), before any other judgement.
local function end_session(sid)
  redis.call('DEL', KEYS[1], KEYS[2])
  redis.call('ZREM', KEYS[3], sid)
end
local sid, presented, now = ARGV[1], ARGV[2], tonumber(ARGV[3])
local grace, idle = tonumber(ARGV[4]), tonumber(ARGV[5])
local function subset(want, have)
  local allowed = {}
  for token in string.gmatch(have, '%S+') do allowed[token] = true end
  for token in string.gmatch(want, '%S+') do
    if not allowed[token] then return false end
  end
  return true
end
local s = redis.call('HMGET', KEYS[1], 'jti', 'pjti', 'rot', 'last', 'auth', 'exp', 'ajti',
                     'iat', 'used', 'cid', 'scope', 'attl', 'tr', 'jkt')
if not s[1] then return {'gone'} end
-- The client's transports as of login ('tr', space-separated; absent: a session opened
-- before they were stored, which keeps both). Refused before the reuse check: a token
-- sent the wrong way is the client's mistake, not a replay, and nothing changes.
if s[13] and not string.find(' ' .. s[13] .. ' ', ' ' .. ARGV[11] .. ' ', 1, true) then
  return {'transport_not_allowed'}
end
local reason, u = dead_reason(KEYS[4], s[5])
if reason then end_session(sid); return {reason} end
if now - tonumber(s[4]) > idle then end_session(sid); return {'idle'} end
-- A session bound to a key (DPoP): a presentation without a proof by that key changes
-- nothing at all, so a thief holding only the token can neither rotate nor end it.
local bound = s[14] or ''
if bound ~= ARGV[12] then return {'key_mismatch'} end
if KEYS[5] and not remember_proof(KEYS[5], ARGV[14], ARGV[13]) then
  return {'replay'}
end
if presented == s[1] then
  local scope = s[11]
  if ARGV[10] ~= '' then
    -- Narrowing only (RFC 6749 section 6). A session from before clients has no
    -- scope: the caller checked against the default client's.
    if scope and not subset(ARGV[10], scope) then return {'invalid_scope'} end
    scope = ARGV[10]
    redis.call('HSET', KEYS[1], 'scope', scope)
  end
  -- Rotating makes the old parent a grandparent: reuse.
  redis.call('HSET', KEYS[1], 'jti', ARGV[6], 'ajti', ARGV[7], 'iat', ARGV[8],
             'pjti', presented, 'rot', now, 'last', now)
  return {'rotated', ARGV[6], ARGV[7], ARGV[8], s[6], u[4], u[1], s[10], scope, s[12], bound}
end
-- The parent: its client may have lost the reply (a timeout after this script ran, or
-- redis-py resending the command). A bound session hands it the pair already issued at
-- any time (the proof shows it is the device: a thief without the key never gets here);
-- a bearer session only within the grace window, anchored to the first rotation and
-- never chained. Anything else, the grandparent included, is a replay: the family ends.
if s[2] and presented == s[2] then
  -- ARGV[6] == s[1]: this very command ran already (redis-py resent it after a
  -- dropped connection): its own pair, whatever the window.
  if bound ~= '' or ARGV[6] == s[1] or (grace > 0 and now - tonumber(s[3]) <= grace) then
    return {'grace', s[1], s[7], s[8], s[6], u[4], u[1], s[10], s[11], s[12], bound}
  end
end
end_session(sid)
return {'reused'}
