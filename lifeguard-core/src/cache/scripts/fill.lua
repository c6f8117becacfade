-- A reader's fill after a miss (spec 3.4). KEYS: row, lease. ARGV: lease token, version,
-- payload, ttl in ms. Stores only while the lease is still this reader's (any invalidation
-- deletes it) and nothing as new is stored; the lease goes either way.
if redis.call('GET', KEYS[2]) ~= ARGV[1] then
  return 'rejected_lease'
end
redis.call('DEL', KEYS[2])
local stored = redis.call('HGET', KEYS[1], 'v')
if stored and tonumber(stored) >= tonumber(ARGV[2]) then
  return 'rejected_version'
end
redis.call('HSET', KEYS[1], 'v', ARGV[2], 'p', ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return 'stored'
