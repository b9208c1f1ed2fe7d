-- KEYS: device-code record, pending index.
-- ARGV: now_ms, client id, the poll's DPoP key thumbprint ('' for none).
-- Returns {status, ...}: {'expired'}; {'invalid_grant'} (another client's code, or one
-- redeemed already); {'slow_down', interval}; {'pending'}; {'denied'};
-- {'dpop_mismatch'}; {'approved', uid, scope, client id, device name, jkt}.
-- A poll sooner than the interval after the last one raises the interval by 5 s
-- (RFC 8628 section 3.5). Approved -> redeemed happens here, once: two pollers racing
-- get one session.
local f = redis.call('HMGET', KEYS[1], 'status', 'cid', 'interval', 'last', 'jkt', 'uid',
                     'scope', 'name')
local status = f[1]
if not status then return {'expired'} end
if f[2] ~= ARGV[2] or status == 'redeemed' then return {'invalid_grant'} end
local now, interval = tonumber(ARGV[1]), tonumber(f[3])
if f[4] and now - tonumber(f[4]) < interval * 1000 then
  interval = interval + 5
  redis.call('HSET', KEYS[1], 'interval', interval, 'last', now)
  return {'slow_down', interval}
end
redis.call('HSET', KEYS[1], 'last', now)
if status == 'pending' then return {'pending'} end
if status == 'denied' then
  redis.call('DEL', KEYS[1])
  return {'denied'}
end
if (f[5] or '') ~= ARGV[3] then return {'dpop_mismatch'} end
redis.call('HSET', KEYS[1], 'status', 'redeemed')
redis.call('ZREM', KEYS[2], KEYS[1])
return {'approved', f[6], f[7] or '', f[2], f[8] or '', f[5] or ''}
