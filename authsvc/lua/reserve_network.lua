-- KEYS: the client network's bucket. ARGV: attempt id, limit, window ms.
-- Single-key (the account's keys live in another Redis Cluster slot); a pipeline
-- sends it with the account's script.
return reserve(KEYS[1], ARGV[1], tonumber(ARGV[2]), ARGV[3])
