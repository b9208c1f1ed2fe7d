-- S3: POST /api/v1/user/login, round robin over many accounts (one account's parallel
-- attempts count against its failure limit while in flight).  args: <accounts> <password>
local next_user, accounts, password

function init(args)
  accounts, password = tonumber(args[1]), args[2]
  next_user = id
end

function request()
  local body = string.format('{"username":"bench%d","password":"%s"}', next_user % accounts, password)
  next_user = next_user + 7
  return wrk.format("POST", "/api/v1/user/login", { ["Content-Type"] = "application/json" }, body)
end
