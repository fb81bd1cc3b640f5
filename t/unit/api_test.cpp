// The API table and what it decides before a handler runs.
#include <gtest/gtest.h>

#include "core/api.h"
#include "harness.h"

using namespace dp;

TEST(Router, MethodsAndParams) {
    auto m = api_route("PUT", "/api/v1/device-pairing/abc_DEF-1");
    EXPECT_EQ(m.outcome, RouteMatch::Found);
    EXPECT_EQ(m.spec->route, Route::MailboxDeposit);
    EXPECT_EQ(m.param, "abc_DEF-1");
    EXPECT_TRUE(m.spec->has_body);
    m = api_route("PATCH", "/api/v1/device-pairing/abc");
    EXPECT_EQ(m.outcome, RouteMatch::MethodNotAllowed);
    EXPECT_EQ(m.allow, "PUT, GET, HEAD, DELETE");
    EXPECT_EQ(api_route("HEAD", "/api/v1/device-pairing/x").spec->route, Route::MailboxPoll) << "HEAD wherever GET is";
    EXPECT_EQ(api_route("HEAD", "/pair/refresh").outcome, RouteMatch::Found);
    EXPECT_EQ(api_route("HEAD", "/pair").spec->route, Route::PairPage);
    EXPECT_EQ(api_route("HEAD", "/api/devices/attest").outcome, RouteMatch::MethodNotAllowed);
    EXPECT_EQ(api_route("GET", "/api/v1/device-pairing/a/b").outcome, RouteMatch::NotFound);
    EXPECT_EQ(api_route("GET", "/api/v1/device-pairing/a%2e").outcome, RouteMatch::NotFound);
    EXPECT_EQ(api_route("GET", "/api/devices/identity").spec->route, Route::Identity);
    EXPECT_EQ(api_route("DELETE", "/api/devices/dev_1").spec->route, Route::DeviceRevoke);
    EXPECT_EQ(api_route("DELETE", "/api/devices/dev_1").spec->auth, RouteAuth::Bearer);
    EXPECT_EQ(api_route("GET", "/api/v1/device-pairing/x").spec->auth, RouteAuth::DeviceKey);
    EXPECT_EQ(api_route("PUT", "/api/v1/device-pairing/x").spec->auth, RouteAuth::None);  // write token, in the handler
    EXPECT_EQ(api_route("GET", "/api/devices/pairing/status/x").spec->auth, RouteAuth::None);  // the id is the capability
}

namespace {

Request head(const char* content_type, int64_t length) {
    Request r;
    r.content_type = content_type;
    r.content_length = length;
    return r;
}

}  // namespace

TEST(Api, PrecheckDecides404405And413BeforeTheBody) {
    Settings s;
    s.max_body = 100;
    auto code = [&](const char* method, const char* path, const Request& req) {
        auto early = api_precheck(api_route(method, path), req, s);
        return early ? field(*early, "code") : std::string("go");
    };
    EXPECT_EQ(code("GET", "/nope", head("", 0)), "not_found");
    auto r = api_precheck(api_route("DELETE", "/health"), head("", 0), s);
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 405);
    EXPECT_EQ(r->headers[0], (std::pair<std::string, std::string>("Allow", "GET, HEAD")));
    EXPECT_EQ(code("POST", "/pair", head("multipart/form-data; boundary=x", 10)), "go") << "judged after credentials";
    EXPECT_EQ(code("POST", "/pair", head("application/json", 101)), "body_too_large");
    EXPECT_EQ(code("POST", "/pair", head("Application/JSON; charset=utf-8", 100)), "go");
    EXPECT_EQ(code("POST", "/pair", head("application/merge-patch+json", 10)), "go");
    EXPECT_EQ(code("POST", "/pair", head("", 0)), "go") << "no body: the handler says what is missing";
    EXPECT_EQ(code("GET", "/health", head("text/plain", 10)), "go") << "bodiless routes ignore the media type";
}

TEST(Api, RoutesNeedTheirCredentialBeforeTheHandlerRuns) {
    Harness h;
    for (auto [method, path] : {std::pair{"GET", "/pair/refresh"}, {"GET", "/api/devices"}, {"POST", "/api/devices/attest"},
                                {"GET", "/api/devices/stats"}, {"POST", "/api/devices/pairing/cleanup"}}) {
        Response r = h.call(method, path, "", kT0);
        EXPECT_EQ(r.status, 401) << path;
        EXPECT_EQ(field(r, "code"), "authentication_required") << path;
    }
    Response r = h.call("POST", "/api/v1/device-pairing", "", kT0);
    EXPECT_EQ(r.status, 401);
    EXPECT_EQ(r.headers[0].second, "DeviceKey realm=\"device-pairing\"");
}

// Found by the api fuzzer: jansson's message for a malformed body quotes the
// offending bytes, which need not be UTF-8.
TEST(Api, AMalformedBodyWithInvalidUtf8IsA400) {
    Harness h;
    h.new_otp(kT0);
    Response r = h.call("POST", "/pair", "{\"otp\":\xff\xfe}", kT0);
    EXPECT_EQ(r.status, 400);
    EXPECT_EQ(field(r, "code"), "invalid_request");
    r = h.call("POST", "/pair", "{\"o\xc3\":1}", kT0);
    EXPECT_EQ(r.status, 400);
}

TEST(Api, JsonIsAcceptedAsClientsSendItAndCredentialsComeBeforeTheMediaType) {
    Harness h;
    auto post = [&](const char* path, const char* type, const std::string& body, const std::string& auth = "") {
        Request req;
        req.method = "POST";
        req.path = path;
        req.content_type = type;
        req.body = body;
        req.authorization = auth;
        req.now_ms = kT0;
        return api_handle(h.store, h.settings, api_route("POST", path), req, h.addr);
    };
    for (const char* type : {"", "text/plain;charset=UTF-8", "application/x-www-form-urlencoded", "application/json"})
        EXPECT_EQ(post("/api/devices/pairing/request", type, "{\"requesterId\":\"x\"}").status, 200) << type;
    EXPECT_EQ(field(post("/api/devices/pairing/request", "application/x-www-form-urlencoded", "requesterId=x"), "code"),
              "invalid_request") << "a form body is not JSON: 400";
    for (const char* type : {"multipart/form-data; boundary=b", "application/octet-stream", "image/png"})
        EXPECT_EQ(post("/api/devices/pairing/request", type, "{}").status, 415) << type;
    EXPECT_EQ(post("/api/devices/attest", "multipart/form-data", "{}").status, 401) << "credentials first";
    EXPECT_FALSE(media_type_can_hold_json("Multipart/Mixed"));
    EXPECT_TRUE(media_type_can_hold_json("application/merge-patch+json"));
}
