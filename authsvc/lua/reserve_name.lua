-- KEYS: the username key. ARGV: 'pending:<uid>:<until_ms>', now_ms, ttl_ms.
-- Step one of creating a user: reserve the name unless it is taken. A pending
-- reservation past its deadline is a creation that crashed half-way: free again.
local held = redis.call('GET', KEYS[1])
if held then
  local deadline = string.match(held, '^pending:[^:]*:(%d+)$')
  if not deadline or tonumber(deadline) > tonumber(ARGV[2]) then return 0 end
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[3])
return 1
