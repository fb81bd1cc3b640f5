-- wrk: POST /api/v1/device-pairing with the bench account's device key.
wrk.method = "POST"
wrk.path = "/api/v1/device-pairing"
wrk.headers["X-DEVICE-KEY"] = os.getenv("DP_BENCH_KEY")
