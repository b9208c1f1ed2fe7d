-- Prepended to the scripts that call reserve: _script(..., needs=("reserve",)).
-- Login throttling. A bucket is a zset of attempt ids (each login attempt draws a random
-- id), so a command resent by redis-py after a dropped connection counts nothing twice
-- and handing an attempt back is a ZREM. An attempt is counted *before* the password is
-- checked, so parallel requests cannot all slip under the limit; a refused attempt is
-- not added, so a bucket never holds more than its limit. Fixed window: the first
-- attempt sets the TTL. Returns the ms until the caller may try again, 0 to proceed.
local function reserve(key, attempt, limit, window)
  if redis.call('ZSCORE', key, attempt) then return 0 end
  local count = redis.call('ZCARD', key)
  if count >= limit then return math.max(redis.call('PTTL', key), 1) end
  redis.call('ZADD', key, 0, attempt)
  if count == 0 then redis.call('PEXPIRE', key, window) end
  return 0
end
