-- The leader's heartbeat (spec 3.6, 3.7). KEYS: heartbeat, epoch. ARGV: epoch, heartbeat
-- value, its lifetime in ms. A leader whose epoch is older than the stored one is fenced;
-- otherwise it claims the epoch and sets the heartbeat, which expires unless renewed.
local current = tonumber(redis.call('GET', KEYS[2]) or '0')
if current > tonumber(ARGV[1]) then
  return 0
end
redis.call('SET', KEYS[2], ARGV[1])
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
return 1
