-- wrk at a fixed offered rate ($DP_BENCH_RATE requests/s per wrk thread)
-- instead of as fast as its connections go: latency at a given load. (At
-- saturation p99 is mostly the connections over the throughput.) Requests
-- come from the wrk script $DP_BENCH_INNER when set, else from wrk's own
-- URL and -H headers. Each request waits for its slot; a slot missed is sent
-- at once, never dropped, so a server that falls behind shows a lower rate.
local inner = os.getenv("DP_BENCH_INNER")
if inner and inner ~= "" then dofile(inner) end

local ffi = require("ffi")
ffi.cdef [[
  typedef struct { long tv_sec; long tv_nsec; } dp_timespec;
  int clock_gettime(int clock, dp_timespec* ts);
]]
local ts = ffi.new("dp_timespec")
local function now_ms()
  ffi.C.clock_gettime(1, ts)  -- CLOCK_MONOTONIC
  return tonumber(ts.tv_sec) * 1000 + tonumber(ts.tv_nsec) / 1e6
end

local period_ms = 1000 / tonumber(os.getenv("DP_BENCH_RATE"))
local slot
function delay()
  local now = now_ms()
  slot = (slot or now) + period_ms
  local wait = slot - now
  return wait > 0 and math.floor(wait) or 0
end
