-- The reflector's action on one changed row (spec 3.6). KEYS: row, lease. ARGV: epoch,
-- version, payload, op ('r' refresh, 'd' drop). A fill in flight loses its lease first, so
-- it cannot store what it read before this change. Only rows already cached are touched,
-- and a refresh keeps the row's TTL (HSET leaves it), so keys nobody reads still expire.
-- Each row remembers the epoch that last wrote it: a leader older than that is fenced.
local lease_cleared = redis.call('DEL', KEYS[2])
local stored = redis.call('HMGET', KEYS[1], 'v', 'e')
if not stored[1] then
  if lease_cleared == 1 then return 'lease_cleared' end
  return 'skipped_inactive'
end
if stored[2] and tonumber(stored[2]) > tonumber(ARGV[1]) then
  return 'fenced'
end
if ARGV[4] == 'd' then
  redis.call('DEL', KEYS[1])
  return 'invalidated'
end
if tonumber(stored[1]) >= tonumber(ARGV[2]) then
  return 'rejected_version'
end
redis.call('HSET', KEYS[1], 'v', ARGV[2], 'p', ARGV[3], 'e', ARGV[1])
return 'refreshed'
