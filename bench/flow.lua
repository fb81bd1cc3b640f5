-- wrk: the relay flow as clients run it: mint, deposit real keys with the
-- write token, poll. Requests are mixed 1:1:1 from per-thread queues.
local key = os.getenv("DP_BENCH_KEY")
local body = string.format('{"session_pub":"%s","ecdh_pub":"%s"}', os.getenv("DP_BENCH_SESSION"), os.getenv("DP_BENCH_ECDH"))
local deposits, polls = {}, {}

request = function()
  if #polls > 0 then
    return wrk.format("GET", "/api/v1/device-pairing/" .. table.remove(polls), { ["X-DEVICE-KEY"] = key })
  end
  if #deposits > 0 then
    local d = table.remove(deposits)
    table.insert(polls, d.id)
    return wrk.format("PUT", "/api/v1/device-pairing/" .. d.id,
      { ["Authorization"] = "Bearer " .. d.token, ["Content-Type"] = "application/json" }, body)
  end
  return wrk.format("POST", "/api/v1/device-pairing", { ["X-DEVICE-KEY"] = key })
end

response = function(status, headers, resp)
  if status == 201 then
    table.insert(deposits, { id = resp:match('"pairing_id":"([^"]+)"'), token = resp:match('"write_token":"([^"]+)"') })
  end
end
