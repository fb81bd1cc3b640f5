-- wrk: POST /oauth/device_authorization from a random client address each
-- time (X-Forwarded-For, trusted by realip in the bench configuration): the
-- per-address budget of 10 a minute would refuse one address's flood.
wrk.method = "POST"
wrk.path = "/oauth/device_authorization"
wrk.body = "client_id=bench"
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"

request = function()
  wrk.headers["X-Forwarded-For"] = string.format("10.%d.%d.%d", math.random(0, 255), math.random(0, 255), math.random(1, 254))
  return wrk.format()
end
