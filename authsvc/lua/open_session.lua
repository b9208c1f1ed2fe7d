-- KEYS: user, session, session meta, sessions index, proof (only with a DPoP proof).
-- ARGV: the password hash just verified, its upgrade ('': none), then create_session's.
-- After a login's password check: upgrade the hash unless it changed meanwhile
-- (rehash.lua), then record the session (create_session.lua). Both files run here
-- unchanged, as functions of their own KEYS and ARGV.
if ARGV[2] ~= '' then rehash({KEYS[1]}, {ARGV[1], ARGV[2]}) end
return create_session({KEYS[2], KEYS[3], KEYS[4], KEYS[5]}, {unpack(ARGV, 3)})
