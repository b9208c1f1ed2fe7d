-- S2: refresh with rotation, every refresh token used exactly once.
-- args: <token file> <thread count>. The file holds one session's refresh token a line;
-- thread i takes lines i, i+n, ... as its pool. request() takes the oldest token out of
-- the pool, response() puts the rotated one back, so each token is sent once and a
-- session is never in flight twice (the pool is larger than the thread's connections).
local pool = {}

function init(args)
  local threads, n = tonumber(args[2]), 0
  for line in io.lines(args[1]) do
    if n % threads == id then pool[#pool + 1] = line end
    n = n + 1
  end
end

function request()
  local token = table.remove(pool, 1) or "pool-empty"
  return wrk.format("GET", "/api/v1/user/refresh", { Authorization = "Bearer " .. token })
end

function response(status, headers, body)
  local token = body:match('"refresh_token":%s*"([^"]+)"')
  if token then pool[#pool + 1] = token end
end
