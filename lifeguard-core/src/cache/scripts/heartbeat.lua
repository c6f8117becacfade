-- The leader's heartbeat (spec 3.6, 3.7). KEYS: heartbeat, epoch. ARGV: epoch, heartbeat
-- value, its lifetime in ms, and optionally the server's run id as the leader last saw it.
-- A leader whose epoch is older than the stored one is fenced (0). A server whose run id
-- differs has restarted since the leader looked (-1): it may hold values older than what
-- the leader reflected, so the leader must not vouch for it before it bumps the generation.
-- Otherwise the leader claims the epoch and sets the heartbeat, which expires unless renewed.
if ARGV[4] and ARGV[4] ~= '' then
  local info = redis.call('INFO', 'server')
  if string.match(info, 'run_id:(%x+)') ~= ARGV[4] then
    return -1
  end
end
local current = tonumber(redis.call('GET', KEYS[2]) or '0')
if current > tonumber(ARGV[1]) then
  return 0
end
redis.call('SET', KEYS[2], ARGV[1])
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
return 1
