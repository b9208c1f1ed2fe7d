-- Prepended to the scripts that call reserve: _script(..., needs=("reserve",)).
-- Login throttling. A bucket is a zset of attempt ids (each login attempt draws a random
-- id), so a command resent by redis-py after a dropped connection counts nothing twice
-- and handing an attempt back is a ZREM. An attempt is counted *before* the password is
-- checked, so parallel requests cannot all slip under the limit; a refused attempt is
-- not added, so a bucket never holds more than its limit. Fixed window: the first
-- attempt sets the TTL. wait_for answers the ms until the caller may try again (0: go
-- ahead) and the bucket's size, and changes nothing; charge counts the attempt (given
-- the size wait_for saw); reserve does both.
local function wait_for(key, attempt, limit)
  if redis.call('ZSCORE', key, attempt) then return 0, -1 end
  local count = redis.call('ZCARD', key)
  if count >= limit then return math.max(redis.call('PTTL', key), 1), count end
  return 0, count
end
local function charge(key, attempt, window, count)
  if count < 0 then return end -- counted already (a resent command)
  redis.call('ZADD', key, 0, attempt)
  if count == 0 then redis.call('PEXPIRE', key, window) end
end
local function reserve(key, attempt, limit, window)
  local wait, count = wait_for(key, attempt, limit)
  if wait == 0 then charge(key, attempt, window, count) end
  return wait
end
-- The account's bucket for an attempt from `network`: the network's own while the
-- account is known there (a login succeeded from it), else the one every other network
-- shares. Guessing from strangers stays bounded by one limit per window, and cannot
-- lock the owner out of the networks it is known on.
local function account_bucket(known, shared, own, network, now)
  local known_until = redis.call('ZSCORE', known, network)
  if known_until and tonumber(known_until) > tonumber(now) then return own end
  return shared
end
