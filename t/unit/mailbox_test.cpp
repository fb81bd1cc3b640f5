// Seed 001: the relay mailbox.
#include <gtest/gtest.h>

#include "core/persist/snapshot.h"
#include "harness.h"

using namespace dp;

TEST(Mailbox, ExpiresAfterTtl) {
    Harness h;
    h.settings.mailbox_ttl_s = 300;
    std::string key = "desktop-key";
    h.settings.device_keys.push_back({sha256(key), "alice"});
    Response r = h.call("POST", "/api/v1/device-pairing", "", kT0, "", key);
    ASSERT_EQ(r.status, 201);
    std::string id = field(r, "pairing_id");
    EXPECT_EQ(field(r, "expires_in_secs"), "300");
    EXPECT_EQ(h.call("GET", "/api/v1/device-pairing/" + id, "", kT0 + 299000, "", key).status, 200);
    EXPECT_EQ(h.call("GET", "/api/v1/device-pairing/" + id, "", kT0 + 300000, "", key).status, 404);
    Response wait = h.call("GET", "/api/v1/device-pairing/" + id + "?wait=5", "", kT0, "", key);
    EXPECT_EQ(wait.poll_until_ms, kT0 + 5000);
}

TEST(Mailbox, AccountCapFollowsCancelExpiryAndReload) {
    Harness h;
    h.settings.max_pairings_per_account = 2;
    h.settings.mailbox_ttl_s = 10;
    h.settings.device_keys.push_back({sha256("ka"), "alice"});
    h.settings.device_keys.push_back({sha256("kb"), "bob"});
    auto mint = [&](const char* key, int64_t now) { return h.call("POST", "/api/v1/device-pairing", "", now, "", key); };
    std::string first = field(mint("ka", kT0), "pairing_id");
    EXPECT_EQ(mint("ka", kT0).status, 201);
    EXPECT_EQ(mint("ka", kT0).status, 429);
    EXPECT_EQ(mint("kb", kT0).status, 201) << "the cap is per account";
    EXPECT_EQ(h.call("DELETE", "/api/v1/device-pairing/" + first, "", kT0, "", "ka").status, 204);
    EXPECT_EQ(mint("ka", kT0).status, 201) << "a cancel frees a slot";
    EXPECT_EQ(mint("ka", kT0).status, 429);

    MemoryStore reloaded;
    std::string err;
    ASSERT_TRUE(load_state(reloaded, h.locked([&] { return serialize_state(h.store); }), (uint32_t)(kT0 / 1000), &err)) << err;
    Request req;
    req.method = "POST";
    req.device_key = "ka";
    req.now_ms = kT0;
    EXPECT_EQ(api_handle(reloaded, h.settings, api_route("POST", "/api/v1/device-pairing"), req, h.addr).status, 429)
        << "the count is rebuilt from the loaded mailboxes";

    EXPECT_EQ(mint("ka", kT0 + 11000).status, 201) << "expired mailboxes free their slots";
}
