// Paired devices: list, revoke, stats, and the roles that guard them.
#include <gtest/gtest.h>

#include "harness.h"

using namespace dp;

namespace {

// The id of the newest listed device.
std::string last_device_id(Harness& h) {
    Response r = h.call("GET", "/api/devices", "", kT0, kOperator);
    std::string err;
    Json j = parse_json_object(r.body, &err);
    json_t* list = json_object_get(j.get(), "devices");
    json_t* last = json_array_get(list, json_array_size(list) - 1);
    return json_string_value(json_object_get(last, "id"));
}

}  // namespace

TEST(Devices, RevokedTokenNoLongerAuthenticates) {
    Harness h;
    std::string device = h.owner();
    EXPECT_EQ(h.call("GET", "/api/devices", "", kT0, device).status, 200);
    std::string id = last_device_id(h);
    Response r = h.call("DELETE", "/api/devices/" + id, "", kT0, kOperator);
    EXPECT_EQ(r.status, 204);
    EXPECT_TRUE(r.durable);
    EXPECT_EQ(h.call("GET", "/api/devices", "", kT0, device).status, 401);
    EXPECT_EQ(h.call("DELETE", "/api/devices/" + id, "", kT0, kOperator).status, 404);
    EXPECT_EQ(h.store.state().devices, 0u);
}

TEST(Devices, TheDeviceRoleMayRevokeOnlyItself) {
    Harness h;
    std::string owner = h.owner(kT0);
    std::string owner_id = last_device_id(h);
    std::string device = h.device(kT0 + 5000);  // listed after the owner: the list is in pairing order
    std::string device_id = last_device_id(h);
    Response r = h.call("DELETE", "/api/devices/" + owner_id, "", kT0, device);
    EXPECT_EQ(r.status, 403);
    EXPECT_EQ(field(r, "code"), "forbidden");
    EXPECT_EQ(h.call("GET", "/api/devices", "", kT0, owner).status, 200) << "the owner survives";
    EXPECT_EQ(h.call("DELETE", "/api/devices/" + device_id, "", kT0, device).status, 204);
    EXPECT_EQ(h.call("GET", "/api/devices", "", kT0, device).status, 401);
}

TEST(Devices, StatsAndPendingAreOwnerOnly) {
    Harness h;
    std::string owner = h.owner();
    std::string device = h.device();
    for (const char* path : {"/api/devices/stats", "/api/devices/pairing/pending"}) {
        Response r = h.call("GET", path, "", kT0, device);
        EXPECT_EQ(r.status, 403) << path;
        EXPECT_EQ(field(r, "code"), "forbidden") << path;
        EXPECT_EQ(h.call("GET", path, "", kT0, owner).status, 200) << path;
        EXPECT_EQ(h.call("GET", path, "", kT0, kOperator).status, 200) << path;
    }
}

TEST(Devices, ListShowsNoSecretAndStatsCountRecords) {
    Harness h;
    std::string owner = h.owner();
    Response list = h.call("GET", "/api/devices", "", kT0, owner);
    EXPECT_EQ(list.body.find(owner.substr(7)), std::string::npos);
    EXPECT_NE(list.body.find("\"role\":\"owner\""), std::string::npos);
    EXPECT_NE(list.body.find("\"method\":\"otp\""), std::string::npos);
    Response stats = h.call("GET", "/api/devices/stats", "", kT0, owner);
    EXPECT_NE(stats.body.find("\"devices\":1"), std::string::npos) << stats.body;
}

TEST(Devices, ANameFromAnInvalidUserAgentIsListedAsValidUtf8) {
    Harness h;
    std::string otp = h.new_otp(kT0);
    Request req;
    req.method = "POST";
    req.path = "/pair";
    req.body = "{\"otp\":\"" + otp + "\"}";
    req.user_agent = "A\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9-App \xff\x01";
    req.now_ms = kT0;
    ASSERT_EQ(api_handle(h.store, h.settings, api_route("POST", "/pair"), req, h.addr).status, 200);
    Response list = h.call("GET", "/api/devices", "", kT0, kOperator);
    ASSERT_EQ(list.status, 200);
    EXPECT_NE(list.body.find("\"name\":\"A\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\""), std::string::npos)
        << list.body;
    EXPECT_NE(list.body.find("dev_"), std::string::npos) << "the device is listed";
}
