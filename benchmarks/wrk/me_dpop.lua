-- S1 with DPoP: GET /api/v1/user/me with one bound access token, a fresh proof each time.
-- args: <token file> <proof file> <thread count>. Thread i sends proofs i, i+n, ... once
-- each (the server refuses a proof's second use); out of proofs, it sends a spent one.
local proofs, token = {}, nil

function init(args)
  token = io.open(args[1]):read("*l")
  local threads, n = tonumber(args[3]), 0
  for line in io.lines(args[2]) do
    if n % threads == id then proofs[#proofs + 1] = line end
    n = n + 1
  end
end

local next_proof = 0

function request()
  next_proof = next_proof + 1
  local proof = proofs[next_proof] or proofs[1]
  return wrk.format("GET", "/api/v1/user/me",
                    { Authorization = "DPoP " .. token, DPoP = proof })
end
