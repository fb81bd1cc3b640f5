-- From the key layout before hash tags (PREFIX r:..., PREFIX seq) to the
-- tagged one (PREFIX{fleet}:r:..., PREFIX{fleet}:seq): one SCAN step over the
-- old keys, each of the fleet's families renamed unless the new name is
-- taken. Run once, by the first follower that finds no tagged sequence; a
-- one-time step of an upgrade, not for Redis Cluster (no KEYS).
-- ARGV: old prefix, new prefix, cursor, the old prefix as a SCAN glob.
-- Returns the next cursor ("0": done).
local old, new = ARGV[1], ARGV[2]
local step = redis.call('SCAN', ARGV[3], 'MATCH', ARGV[4], 'COUNT', 1000)
for _, key in ipairs(step[2]) do
  local rest = string.sub(key, #old + 1)
  local family = string.sub(rest, 1, 2)
  if string.sub(key, 1, #new) ~= new and (rest == 'otp' or rest == 'seq' or rest == 'feed' or rest == 'epoch'
      or family == 'r:' or family == 'a:') then
    redis.call('RENAMENX', key, new .. rest)
  end
end
return step[1]
