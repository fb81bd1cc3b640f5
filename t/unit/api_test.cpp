// The API table and what it decides before a handler runs.
#include <gtest/gtest.h>

#include "core/api.h"
#include "harness.h"

using namespace dp;

TEST(Router, MethodsAndParams) {
    auto m = api_route("PUT", "/api/v1/device-pairing/abc_DEF-1");
    EXPECT_EQ(m.outcome, RouteMatch::Found);
    EXPECT_EQ(m.route, Route::MailboxDeposit);
    EXPECT_EQ(m.param, "abc_DEF-1");
    EXPECT_TRUE(m.has_body);
    m = api_route("PATCH", "/api/v1/device-pairing/abc");
    EXPECT_EQ(m.outcome, RouteMatch::MethodNotAllowed);
    EXPECT_EQ(m.allow, "PUT, GET, DELETE");
    EXPECT_EQ(api_route("GET", "/api/v1/device-pairing/a/b").outcome, RouteMatch::NotFound);
    EXPECT_EQ(api_route("GET", "/api/v1/device-pairing/a%2e").outcome, RouteMatch::NotFound);
    EXPECT_EQ(api_route("GET", "/api/devices/identity").route, Route::Identity);
    EXPECT_EQ(api_route("DELETE", "/api/devices/dev_1").route, Route::DeviceRevoke);
    EXPECT_EQ(api_route("DELETE", "/api/devices/dev_1").auth, RouteAuth::Bearer);
    EXPECT_EQ(api_route("GET", "/api/v1/device-pairing/x").auth, RouteAuth::DeviceKey);
    EXPECT_EQ(api_route("PUT", "/api/v1/device-pairing/x").auth, RouteAuth::None);  // write token, in the handler
    EXPECT_EQ(api_route("GET", "/api/devices/pairing/status/x").auth, RouteAuth::None);  // the id is the capability
}
