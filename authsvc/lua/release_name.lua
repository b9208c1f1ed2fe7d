-- KEYS: the username key. ARGV: our pending value. Undo step one, if still ours.
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
