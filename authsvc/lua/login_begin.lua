-- KEYS: the account's known networks, its shared bucket, its bucket for this network,
-- the client network's bucket, the username key.
-- ARGV: network, attempt id, account limit, network limit, window ms, now ms, and the
-- user key around the id: its start and its end (both '': no user wanted).
-- Before a login's password check, on one Redis: both buckets are checked before either
-- is charged, so a refused attempt is charged nowhere; then the user is looked up.
-- Answers {ms to wait} when refused, {0} when no such user (or none wanted), else
-- {0, uid, username, password hash, roles, disabled}.
-- The user's key is read from the username key, so it cannot be in KEYS: one Redis
-- allows that, a Cluster would not (its logins run reserve_network, reserve_account
-- and plain reads instead: authsvc/store_login.py).
local attempt, window = ARGV[2], ARGV[5]
local account = account_bucket(KEYS[1], KEYS[2], KEYS[3], ARGV[1], ARGV[6])
local account_wait, account_count = wait_for(account, attempt, tonumber(ARGV[3]))
local network_wait, network_count = wait_for(KEYS[4], attempt, tonumber(ARGV[4]))
if account_wait > 0 or network_wait > 0 then return {math.max(account_wait, network_wait)} end
charge(account, attempt, window, account_count)
charge(KEYS[4], attempt, window, network_count)
if ARGV[7] == '' then return {0} end
local uid = redis.call('GET', KEYS[5])
if not uid or string.sub(uid, 1, 8) == 'pending:' then return {0} end
local u = redis.call('HMGET', ARGV[7] .. uid .. ARGV[8], 'username', 'pw', 'roles', 'disabled')
if not u[1] then return {0} end
return {0, uid, u[1], u[2] or '', u[3] or '', u[4] or '0'}
