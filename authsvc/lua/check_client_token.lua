-- KEYS: denied, client (both in {clients}). ARGV: the epoch in the token's jti.
-- Returns {status, scopes}: 'denied' (the jti was revoked), 'gone' (no such client, or
-- it is no longer confidential), 'revoked' (minted in an earlier confidential life of
-- the client: made public, then given a secret again), else {'ok', the client's allowed
-- scopes now (space-separated)}.
if redis.call('EXISTS', KEYS[1]) == 1 then return {'denied'} end
local c = redis.call('HMGET', KEYS[2], 'sec', 'cep', 'scopes')
if not c[1] then return {'gone'} end
if c[2] ~= ARGV[1] then return {'revoked'} end
return {'ok', c[3] or ''}
