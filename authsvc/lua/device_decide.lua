-- KEYS: device-code record, user-code index entry, pending index.
-- ARGV: 'approved' or 'denied', user id, user code.
-- Returns 'ok', 'gone' (expired or never issued) or 'decided' (approved, denied or
-- redeemed already: a decision is final). Only a pending code whose user-code entry
-- still names this record changes.
if redis.call('GET', KEYS[2]) ~= KEYS[1] then return 'gone' end
local f = redis.call('HMGET', KEYS[1], 'status', 'ucode')
if not f[1] or f[2] ~= ARGV[3] then return 'gone' end
if f[1] ~= 'pending' then return 'decided' end
redis.call('HSET', KEYS[1], 'status', ARGV[1], 'uid', ARGV[2])
redis.call('ZREM', KEYS[3], KEYS[1])
return 'ok'
