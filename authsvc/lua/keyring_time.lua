-- KEYS: version (only to run on the node that holds the {keyring} slot). ARGV: none.
-- Answers TIME of that node: the clock the change script checks activation times against.
return redis.call('TIME')
