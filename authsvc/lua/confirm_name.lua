-- KEYS: the username key. ARGV: our pending value, uid. Last step: the reservation
-- becomes permanent (no TTL), unless it expired and someone else took the name.
local held = redis.call('GET', KEYS[1])
if held and held ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[2])
return 1
