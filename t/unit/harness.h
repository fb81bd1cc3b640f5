// What the capability tests share: a fixed clock, a MemoryStore, settings,
// and a call() that goes through the same API dispatch nginx uses.
#pragma once

#include <gtest/gtest.h>

#include <string>

#include "core/api.h"
#include "core/json.h"
#include "core/otp.h"
#include "memory_store.h"

namespace dp {

constexpr int64_t kT0 = 1800000000000;  // a fixed "now"
constexpr char kOperatorToken[] = "dp_op_operator-token-for-tests";
constexpr char kOperator[] = "Bearer dp_op_operator-token-for-tests";

// A member of a JSON answer as text: strings, integers, booleans.
inline std::string field(const Response& r, const char* name) {
    std::string err;
    Json j = parse_json_object(r.body, &err);
    if (!j) return "<no json>";
    json_t* v = json_object_get(j.get(), name);
    if (json_is_string(v)) return json_string_value(v);
    if (json_is_integer(v)) return std::to_string(json_integer_value(v));
    if (json_is_boolean(v)) return json_is_true(v) ? "true" : "false";
    return v ? "<other>" : "<absent>";
}

// The same digest with only its last byte changed.
inline Digest last_byte_flipped(Digest d) {
    d[31] ^= 1;
    return d;
}

struct Harness {
    MemoryStore store;
    Settings settings;
    ClientAddr addr;
    std::string content_type;  // of the bodies call() sends (empty: none)
    Harness() {
        addr.len = 4, addr.bytes[0] = 127, addr.bytes[3] = 1;
        settings.operator_token_hash = sha256(kOperatorToken);
    }

    Response call(const char* method, const std::string& path, const std::string& body, int64_t now,
                  const std::string& auth = "", const std::string& key = "") {
        Request req;
        req.method = method;
        req.path = path.substr(0, path.find('?'));
        if (path.find('?') != std::string::npos) req.query = path.substr(path.find('?') + 1);
        req.body = body;
        req.content_type = content_type;
        req.now_ms = now;
        req.authorization = auth;
        req.device_key = key;
        req.host = "gw.local";
        RouteMatch m = api_route(req.method, req.path);
        EXPECT_EQ(m.outcome, RouteMatch::Found) << path;
        if (m.outcome != RouteMatch::Found) return Response();
        Response r = api_handle(store, settings, m, req, addr);
        EXPECT_EQ(store.locked(), 0) << "lock leaked by " << path;
        return r;
    }
    std::string new_otp(int64_t now) { return dp::new_otp(store, settings, now); }
    Response pair(const std::string& otp, int64_t now) {
        return call("POST", "/pair", "{\"otp\":\"" + otp + "\"}", now);
    }
    // A paired owner's "Bearer ..." header.
    std::string owner(int64_t now = kT0) {
        Response r = pair(new_otp(now), now);
        EXPECT_EQ(r.status, 200);
        return "Bearer " + field(r, "token");
    }
    // A device-role token: a pairing code approved by the operator.
    std::string device(int64_t now = kT0) {
        Response req = call("POST", "/api/devices/pairing/request", "", now);
        call("POST", "/api/devices/pairing/approve", "{\"code\":\"" + field(req, "code") + "\"}", now, kOperator);
        Response status = call("GET", "/api/devices/pairing/status/" + field(req, "requestId"), "", now);
        EXPECT_EQ(field(status, "status"), "approved");
        return "Bearer " + field(status, "token");
    }
    // Runs f on the store under its lock, as a handler would.
    template <typename F>
    auto locked(F&& f) {
        StoreLock lock(store);
        return f();
    }
};

}  // namespace dp
