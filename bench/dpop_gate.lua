-- wrk: GET /t with a DPoP-bound token and a fresh proof per request, from
-- the proofs in $DP_BENCH_PROOFS (one per line; each is used once: a proof's
-- jti is accepted once). Each thread takes its own share of the file.
local counter = 0
function setup(thread)
  thread:set("id", counter)
  counter = counter + 1
end

local proofs, i = {}, 0
function init(args)
  local threads = tonumber(os.getenv("DP_BENCH_THREADS") or "1")
  local n = 0
  for line in io.lines(os.getenv("DP_BENCH_PROOFS")) do
    if n % threads == id then proofs[#proofs + 1] = line end
    n = n + 1
  end
end

request = function()
  i = i + 1
  return wrk.format("GET", "/t", { ["Authorization"] = "DPoP " .. os.getenv("DP_BENCH_TOKEN"),
                                   ["DPoP"] = proofs[(i - 1) % #proofs + 1] })
end
