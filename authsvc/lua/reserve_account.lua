-- KEYS: the account's known networks, its shared bucket, its bucket for this network.
-- ARGV: network, attempt id, limit, window ms, now ms.
-- A network the account logged in from successfully has a bucket of its own; every
-- other network shares one. Guessing from strangers stays bounded by one limit per
-- window, and cannot lock the owner out of the networks it is known on.
local bucket = KEYS[2]
local known_until = redis.call('ZSCORE', KEYS[1], ARGV[1])
if known_until and tonumber(known_until) > tonumber(ARGV[5]) then bucket = KEYS[3] end
return reserve(bucket, ARGV[2], tonumber(ARGV[3]), ARGV[4])
