-- KEYS: the account's known networks, its shared bucket, its bucket for this network,
-- the client network's bucket, then open_session's: user, session, meta, sessions index
-- (and the DPoP proof's, with a proof).
-- ARGV: network, attempt id, known until ms, now ms, most networks remembered, then
-- open_session's.
-- After a successful password check, on one Redis: hand the attempt back and remember
-- the network (settle_account.lua), hand it back to the client network's bucket too,
-- and open the session. A Cluster runs the three parts in one pipeline, one per slot.
settle_account({KEYS[1], KEYS[2], KEYS[3]}, {ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]})
redis.call('ZREM', KEYS[4], ARGV[2])
return open_session({KEYS[5], KEYS[6], KEYS[7], KEYS[8], KEYS[9]}, {unpack(ARGV, 6)})
