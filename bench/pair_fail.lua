-- wrk: POST /pair with a wrong OTP from one address (401, then the 429 lockout path).
wrk.method = "POST"
wrk.path = "/pair"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"otp":"000000"}'
