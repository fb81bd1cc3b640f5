// Paired devices: list, revoke, stats, and the roles that guard them.
#include <gtest/gtest.h>

#include <algorithm>

#include "core/audit.h"
#include "core/devices.h"
#include "harness.h"

using namespace dp;

namespace {

// The id of the listed device paired by a method ("otp": an owner, "code": a device).
std::string device_id_by(Harness& h, const char* method = "otp") {
    Response r = h.call("GET", "/api/devices", "", kT0, kOperator);
    std::string err;
    Json j = parse_json_object(r.body, &err);
    json_t* list = json_object_get(j.get(), "devices");
    for (size_t i = 0; i < json_array_size(list); i++) {
        json_t* d = json_array_get(list, i);
        if (std::string(json_string_value(json_object_get(d, "method"))) == method)
            return json_string_value(json_object_get(d, "id"));
    }
    return "";
}

// Every id of every page of GET /api/devices?limit=N, following next_cursor.
std::vector<std::string> all_pages(Harness& h, int limit, size_t* pages) {
    std::vector<std::string> ids;
    std::string cursor;
    *pages = 0;
    for (;;) {
        std::string path = "/api/devices?limit=" + std::to_string(limit) + (cursor.empty() ? "" : "&cursor=" + cursor);
        Response r = h.call("GET", path, "", kT0, kOperator);
        EXPECT_EQ(r.status, 200);
        std::string err;
        Json j = parse_json_object(r.body, &err);
        json_t* list = json_object_get(j.get(), "devices");
        for (size_t i = 0; i < json_array_size(list); i++)
            ids.push_back(json_string_value(json_object_get(json_array_get(list, i), "id")));
        ++*pages;
        json_t* next = json_object_get(j.get(), "next_cursor");
        if (!json_is_string(next) || *pages > 100) return ids;
        cursor = json_string_value(next);
    }
}

}  // namespace

TEST(Devices, RevokedTokenNoLongerAuthenticates) {
    Harness h;
    std::string device = h.owner();
    EXPECT_EQ(h.call("GET", "/api/devices", "", kT0, device).status, 200);
    std::string id = device_id_by(h);
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
    std::string owner_id = device_id_by(h, "otp");
    std::string device = h.device(kT0 + 5000);
    std::string device_id = device_id_by(h, "code");
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

TEST(Devices, AUserAgentIsSummarisedFromAFixedVocabulary) {
    EXPECT_EQ(user_agent_summary("Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) Safari/604.1"), "iPhone");
    EXPECT_EQ(user_agent_summary("Mozilla/5.0 (X11; Linux) Chrome/120 Safari/537.36 Edg/120"), "Edge");
    EXPECT_EQ(user_agent_summary("curl/8.5.0"), "curl");
    EXPECT_EQ(user_agent_summary("\x1b[2J\x1b[31mevilbot/1.0"), "other") << "never the header's own words";
    EXPECT_EQ(user_agent_summary("A\xc3\xa9\xc3\xa9-App \xff\x01"), "other");
    EXPECT_EQ(user_agent_summary(""), "");

    // The default device name from it, and the audit line's field.
    Harness h;
    std::string otp = h.new_otp(kT0);
    Request req;
    req.method = "POST";
    req.path = "/pair";
    req.body = "{\"otp\":\"" + otp + "\"}";
    req.user_agent = "\x1b]0;owned\x07 Agent";
    req.now_ms = kT0;
    Response paired = api_handle(h.store, h.settings, api_route("POST", "/pair"), req, h.addr);
    ASSERT_EQ(paired.status, 200);
    Response list = h.call("GET", "/api/devices", "", kT0, kOperator);
    EXPECT_NE(list.body.find("\"name\":\"other\""), std::string::npos) << list.body;
    ASSERT_FALSE(paired.audit.empty());
    EXPECT_NE(audit_line(paired.audit[0], kT0, h.addr, req.user_agent).find("\"user_agent\":\"other\""), std::string::npos);
}

TEST(Devices, TheListPagesByCursorInIdOrderWithoutGapsOrRepeats) {
    Harness h;
    {
        StoreLock lock(h.store);
        for (int i = 0; i < 105; i++)
            ASSERT_TRUE(issue_device(h.store, h.settings, Role::Device, PairMethod::Code, "d", h.addr, (uint32_t)(kT0 / 1000),
                                     random_bytes(32)));
    }
    size_t pages = 0;
    std::vector<std::string> ids = all_pages(h, 10, &pages);
    EXPECT_EQ(pages, 11u);
    ASSERT_EQ(ids.size(), 105u);
    EXPECT_TRUE(std::is_sorted(ids.begin(), ids.end()));
    EXPECT_EQ(std::adjacent_find(ids.begin(), ids.end()), ids.end()) << "no repeats";
    EXPECT_EQ(all_pages(h, 1000, &pages), ids);
    EXPECT_EQ(pages, 1u);

    Response first = h.call("GET", "/api/devices", "", kT0, kOperator);
    std::string err;
    Json j = parse_json_object(first.body, &err);
    EXPECT_EQ(json_array_size(json_object_get(j.get(), "devices")), 100u) << "the default page";
    EXPECT_EQ(json_string_value(json_object_get(j.get(), "next_cursor")), ids[99]);

    // A device revoked between pages neither shifts nor repeats the rest.
    Response page1 = h.call("GET", "/api/devices?limit=50", "", kT0, kOperator);
    ASSERT_EQ(h.call("DELETE", "/api/devices/" + ids[10], "", kT0, kOperator).status, 204);
    Response page2 = h.call("GET", "/api/devices?limit=60&cursor=" + ids[49], "", kT0, kOperator);
    EXPECT_NE(page2.body.find(ids[50]), std::string::npos);
    EXPECT_NE(page2.body.find(ids[104]), std::string::npos);

    for (const char* bad : {"limit=0", "limit=1001", "limit=ten", "limit=-5", "cursor=dev_zz", "cursor=x"}) {
        Response r = h.call("GET", std::string("/api/devices?") + bad, "", kT0, kOperator);
        EXPECT_EQ(r.status, 400) << bad;
        EXPECT_EQ(r.content_type, "application/problem+json") << bad;
    }
}
