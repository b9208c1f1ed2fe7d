-- KEYS: the account's known networks, its shared bucket, its bucket for this network.
-- ARGV: network, attempt id, limit, window ms, now ms.
-- A Cluster's login runs it after reserve_network passed (the keys live in other slots);
-- one Redis runs login_begin instead.
local bucket = account_bucket(KEYS[1], KEYS[2], KEYS[3], ARGV[1], ARGV[5])
return reserve(bucket, ARGV[2], tonumber(ARGV[3]), ARGV[4])
