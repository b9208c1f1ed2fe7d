-- KEYS: the client network's bucket. ARGV: attempt id, limit, window ms.
-- Single-key: a Cluster's login runs it first, then reserve_account only if it passed
-- (the account's keys live in another slot); one Redis runs login_begin instead.
return reserve(KEYS[1], ARGV[1], tonumber(ARGV[2]), ARGV[3])
