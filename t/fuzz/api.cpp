// The whole dispatcher over an in-memory store: hostile bodies, headers,
// paths and methods against every route, with an OTP, device keys, an
// identity and a paired device in place. An exception, a 500, or a store
// touched without its lock is a finding.
#include "core/api.h"
#include "core/devices.h"
#include "core/otp.h"
#include "fuzz.h"

namespace {

const char* const kMethods[] = {"GET", "POST", "PUT", "DELETE", "PATCH", "HEAD"};

dp::Settings& settings() {
    static dp::Settings s = [] {
        dp::Settings s;
        s.operator_token_hash = dp::sha256("dp_op_fuzz");
        s.device_keys.push_back({dp::sha256("dk_fuzz"), "alice"});
        s.identity = dp::Ed25519Identity::generate();
        return s;
    }();
    return s;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size < 2) return 0;
    auto f = dpfuzz::fields(data + 1, size - 1, 8);  // path, query, authorization, key, type, host, agent, body
    dp::MemoryStore store;
    store.capacity = 64;
    dp::ClientAddr addr;
    addr.len = 4;
    addr.bytes[3] = data[0];
    const int64_t now = 1800000000000;
    dp::new_otp(store, settings(), now);
    {
        dp::StoreLock lock(store);
        dp::issue_device(store, settings(), dp::Role::Device, dp::PairMethod::Code, f[6], addr, now / 1000);
    }
    dp::Request req;
    req.method = kMethods[data[0] % 6];
    req.path = f[0];
    req.query = f[1];
    req.authorization = f[2];
    req.device_key = f[3];
    req.content_type = f[4];
    req.host = f[5];
    req.user_agent = f[6];
    req.body = f[7];
    req.content_length = (int64_t)req.body.size();
    req.now_ms = now;
    for (const char* path : {req.path.c_str(), "/pair", "/api/devices/verify", "/api/devices/pairing/request"}) {
        dp::RouteMatch m = dp::api_route(req.method, path);
        if (dp::api_precheck(m, req, settings())) continue;
        dp::Request r = req;
        r.path = path;
        // Any exception here would reach the glue's 500 path: bad input must
        // be a 4xx, so an escape is a finding (libFuzzer reports it).
        dp::Response resp = dp::api_handle(store, settings(), m, r, addr);
        if (resp.status < 200 || resp.status >= 500 && resp.status != 501 && resp.status != 503) abort();
        if (store.locked() != 0) abort();
    }
    return 0;
}
