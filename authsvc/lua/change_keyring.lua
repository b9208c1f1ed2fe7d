-- KEYS: records, version. ARGV: kids to delete, then '--', then kid/record pairs to add.
-- One script, so a change and its version bump are atomic (both keys share the hash
-- tag {keyring}: one cluster slot).
local i = 1
while ARGV[i] ~= '--' do
  redis.call('HDEL', KEYS[1], ARGV[i])
  i = i + 1
end
i = i + 1
while ARGV[i] do
  redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
  i = i + 2
end
return redis.call('INCR', KEYS[2])
