-- KEYS: records, version. ARGV: expected version, new version (the manifest's generation),
-- the new key's activation time ('' with no new key), its least delay in seconds, the
-- sealed manifest, then kids to delete, then '--', then kid/record pairs to add.
-- Answers {'ok', version}; {'moved', version} when another change landed since the caller
-- read the ring; {'clock', now} when the activation time is not within [now + delay,
-- now + delay + 5] by this server's TIME (a caller that computed it from another clock).
-- Nothing is written unless 'ok'. Both keys share the hash tag {keyring}: one cluster slot.
local current = redis.call('GET', KEYS[2]) or '0'
if current ~= ARGV[1] then
  return {'moved', current}
end
if ARGV[3] ~= '' then
  local now = tonumber(redis.call('TIME')[1])
  local at, least = tonumber(ARGV[3]), now + tonumber(ARGV[4])
  if at < least or at > least + 5 then
    return {'clock', tostring(now)}
  end
end
local i = 6
while ARGV[i] ~= '--' do
  redis.call('HDEL', KEYS[1], ARGV[i])
  i = i + 1
end
i = i + 1
while ARGV[i] do
  redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
  i = i + 2
end
redis.call('HSET', KEYS[1], '#manifest', ARGV[5])
redis.call('SET', KEYS[2], ARGV[2])
return {'ok', ARGV[2]}
