
-- KEYS: the feed, the sequence, the pairing log, then each transaction's
-- records and its accounts' sets of live mailboxes. ARGV: origin, feed
-- length cap, count. A committed transaction's leaf templates (JSON split at
-- a NUL where the leaf's index goes) are numbered by the log's length,
-- pushed to it and named in the feed entry.
local a, k = 4, 3  -- the next transaction's first ARGV, its keys after KEYS[k]
local results, fields = {0}, {'o', ARGV[1]}
local now_ms
for t = 1, tonumber(ARGV[3]) do
  local n, cap, guards, leaves = tonumber(ARGV[a]), tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2]), tonumber(ARGV[a + 3])
  local kv = a + 4         -- per key: before, after, expiry
  local gv = kv + 3 * n    -- per guard: member, expiry (its set: KEYS[k + n + 1 + g])
  local lv = gv + 2 * guards  -- per leaf: its template
  a = lv + leaves
  local outcome = 1
  for i = 1, n do
    if (redis.call('GET', KEYS[k + i]) or '') ~= ARGV[kv + 3 * (i - 1)] then
      outcome = {0}
      for j = 1, n do outcome[j + 1] = redis.call('GET', KEYS[k + j]) or '' end
      break
    end
  end
  -- The per-account cap, fleet-wide: each account's live mailboxes are a
  -- sorted set scored by expiry.
  if outcome == 1 and cap > 0 then
    for g = 0, guards - 1 do
      if ARGV[gv + 1 + 2 * g] ~= '0' then
        if not now_ms then
          local time = redis.call('TIME')
          now_ms = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
        end
        local set = KEYS[k + n + 1 + g]
        redis.call('ZREMRANGEBYSCORE', set, '-inf', now_ms)
        if redis.call('ZCARD', set) >= cap then
          outcome = 2
          break
        end
      end
    end
  end
  if outcome == 1 then
    for i = 1, n do
      local key, after, expires = KEYS[k + i], ARGV[kv + 1 + 3 * (i - 1)], ARGV[kv + 2 + 3 * (i - 1)]
      if after == '' then
        redis.call('DEL', key)
      elseif expires ~= '0' then
        redis.call('SET', key, after, 'PXAT', expires)
      else
        redis.call('SET', key, after)
      end
      fields[#fields + 1] = key
      fields[#fields + 1] = after
    end
    for g = 0, guards - 1 do
      local set, member, expires = KEYS[k + n + 1 + g], ARGV[gv + 2 * g], ARGV[gv + 1 + 2 * g]
      if expires ~= '0' then
        redis.call('ZADD', set, expires, member)
        if redis.call('PEXPIRETIME', set) < tonumber(expires) then redis.call('PEXPIREAT', set, expires) end
      else
        redis.call('ZREM', set, member)
      end
    end
    for l = 0, leaves - 1 do
      local template = ARGV[lv + l]
      local seam = string.find(template, '\0', 1, true)
      local index = redis.call('LLEN', KEYS[3])
      local leaf = string.sub(template, 1, seam - 1) .. index .. string.sub(template, seam + 1)
      redis.call('RPUSH', KEYS[3], leaf)
      fields[#fields + 1] = KEYS[3] .. ':' .. index
      fields[#fields + 1] = leaf
    end
  end
  results[t + 1] = outcome
  k = k + n + guards
end
if #fields > 2 then
  local seq = redis.call('INCR', KEYS[2])
  redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[2], seq .. '-1', unpack(fields))
  results[1] = seq
end
return results
