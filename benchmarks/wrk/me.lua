-- S1: GET /api/v1/user/me with one valid access token.  args: <token file>
function init(args)
  local token = io.open(args[1]):read("*l")
  wrk.method = "GET"
  wrk.path = "/api/v1/user/me"
  wrk.headers["Authorization"] = "Bearer " .. token
end
