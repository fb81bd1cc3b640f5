-- wrk: pending polls of POST /oauth/token, cycling through the device codes
-- in $DP_BENCH_CODES (one per line) from a different place in each thread.
local counter = 0
function setup(thread)
  thread:set("id", counter)
  counter = counter + 1
end

local codes, i = {}, 0
function init(args)
  for line in io.lines(os.getenv("DP_BENCH_CODES")) do codes[#codes + 1] = line end
  i = id * math.floor(#codes / 2)
end

request = function()
  i = i + 1
  return wrk.format("POST", "/oauth/token", { ["Content-Type"] = "application/x-www-form-urlencoded" },
    "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Adevice_code&client_id=bench&device_code=" .. codes[i % #codes + 1])
end
