-- KEYS: client. ARGV: new secret hash, overlap (ms; 0: the old secret stops now), now (ms),
-- a new random epoch. Returns 0 (writing nothing) when the client does not exist. The
-- current secret stays valid for the overlap as the previous one. A client becoming
-- confidential gets the new epoch, which its machine tokens carry in their jti: no
-- token from an earlier confidential life of its id lives on.
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local current = redis.call('HGET', KEYS[1], 'sec')
if current and tonumber(ARGV[2]) > 0 then
  redis.call('HSET', KEYS[1], 'psec', current, 'psecexp', tonumber(ARGV[3]) + tonumber(ARGV[2]))
else
  redis.call('HDEL', KEYS[1], 'psec', 'psecexp')
end
if not current then redis.call('HSET', KEYS[1], 'cep', ARGV[4]) end
redis.call('HSET', KEYS[1], 'sec', ARGV[1])
return 1
