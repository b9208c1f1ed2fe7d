-- S2 with DPoP: refresh with rotation, each refresh token and each proof used once.
-- args: <token file> <proof file> <thread count>. As refresh.lua (a pool of refresh
-- tokens per thread, the rotated one put back, GET with the refresh token as Bearer: the
-- IoT shape every contender's S2 sends), plus one pre-made proof per request.
local pool, proofs = {}, {}

function init(args)
  local threads, n = tonumber(args[3]), 0
  for line in io.lines(args[1]) do
    if n % threads == id then pool[#pool + 1] = line end
    n = n + 1
  end
  n = 0
  for line in io.lines(args[2]) do
    if n % threads == id then proofs[#proofs + 1] = line end
    n = n + 1
  end
end

local next_proof = 0

function request()
  local token = table.remove(pool, 1) or "pool-empty"
  next_proof = next_proof + 1
  return wrk.format("GET", "/api/v1/user/refresh",
                    { Authorization = "Bearer " .. token,
                      DPoP = proofs[next_proof] or proofs[1] })
end

function response(status, headers, body)
  local token = body:match('"refresh_token":%s*"([^"]+)"')
  if token then pool[#pool + 1] = token end
end
