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

namespace {

// P-256's generator: a valid uncompressed point.
const char kP256G[] =
    "046b17d1f2e12c4247f8bce6e563a440f277037d812deb33a0f4a13945d898c2964fe342e2fe1a7f9b8ee7eb4a7c0f9e162bce33576b"
    "315ececbb6406837bf51f5";

struct Relay : Harness {
    Relay() {
        settings.device_keys.push_back({sha256("ka"), "alice"});
        settings.device_keys.push_back({sha256("kb"), "bob"});
    }
    std::string keys_body(const std::string& session_raw) {
        return "{\"session_pub\":\"" + base64_encode(session_raw) + "\",\"ecdh_pub\":\"" +
               base64_encode(*hex_decode(kP256G)) + "\"}";
    }
    std::string valid_body() { return keys_body(Ed25519Identity::generate()->public_raw()); }
    Response mint(const char* key = "ka") { return call("POST", "/api/v1/device-pairing", "", kT0, "", key); }
    Response deposit(const std::string& id, const std::string& token, const std::string& body) {
        return call("PUT", "/api/v1/device-pairing/" + id, body, kT0, "Bearer " + token);
    }
};

}  // namespace

TEST(Mailbox, DepositThenPollReturnsTheKeys) {
    Relay h;
    Response m = h.mint();
    std::string id = field(m, "pairing_id"), wt = field(m, "write_token");
    std::string body = h.valid_body();
    EXPECT_EQ(h.deposit(id, wt, body).status, 204);
    Response poll = h.call("GET", "/api/v1/device-pairing/" + id, "", kT0, "", "ka");
    EXPECT_EQ(field(poll, "status"), "ready");
    EXPECT_NE(body.find(field(poll, "session_pub")), std::string::npos);
}

TEST(Mailbox, ARetriedIdenticalDepositIs204AnotherIs409AndAnotherTokenIs401) {
    Relay h;
    Response m = h.mint();
    std::string id = field(m, "pairing_id"), wt = field(m, "write_token");
    std::string body = h.valid_body();
    ASSERT_EQ(h.deposit(id, wt, body).status, 204);
    EXPECT_EQ(h.deposit(id, wt, body).status, 204) << "the same keys again: a retry";
    Response again = h.deposit(id, wt, h.valid_body());
    EXPECT_EQ(again.status, 409);
    EXPECT_EQ(field(again, "code"), "pairing_already_completed");
    Response other = h.deposit(id, "dp_wt_other", h.valid_body());
    EXPECT_EQ(other.status, 401);
    EXPECT_EQ(field(other, "code"), "invalid_write_token");
}

TEST(Mailbox, WriteTokenDigestDifferingInItsLastByteIsRejected) {
    Relay h;
    Response m = h.mint();
    std::string id = field(m, "pairing_id"), wt = field(m, "write_token");
    h.locked([&] {
        auto* rec = as<MailboxRecord>(h.store.find(Kind::Mailbox, key_of("mailbox", id)));
        Digest almost = last_byte_flipped(sha256(wt));
        memcpy(update_record(h.store, rec)->write_token_hash, almost.data(), 32);
        return 0;
    });
    EXPECT_EQ(h.deposit(id, wt, h.valid_body()).status, 401);
}

TEST(Mailbox, BadKeysAre400AndDoNotSpendTheToken) {
    Relay h;
    Response m = h.mint();
    std::string id = field(m, "pairing_id"), wt = field(m, "write_token");
    Response r = h.deposit(id, wt, "{\"session_pub\":\"-_8=\",\"ecdh_pub\":\"\"}");
    EXPECT_EQ(field(r, "code"), "invalid_key_encoding");
    r = h.deposit(id, wt, h.keys_body(std::string(31, 'a')));
    EXPECT_EQ(field(r, "code"), "invalid_key_length");
    r = h.deposit(id, wt, h.keys_body(*hex_decode(std::string("01") + std::string(62, '0'))));
    EXPECT_EQ(field(r, "code"), "invalid_key") << "the identity point";
    EXPECT_EQ(h.deposit(id, wt, h.valid_body()).status, 204) << "the token survived the 400s";
}

TEST(Mailbox, AnotherAccountCannotPollOrCancel) {
    Relay h;
    std::string id = field(h.mint("ka"), "pairing_id");
    Response poll = h.call("GET", "/api/v1/device-pairing/" + id, "", kT0, "", "kb");
    EXPECT_EQ(poll.status, 404);
    EXPECT_EQ(field(poll, "code"), "pairing_not_found");
    EXPECT_EQ(h.call("DELETE", "/api/v1/device-pairing/" + id, "", kT0, "", "kb").status, 404);
    EXPECT_EQ(h.call("GET", "/api/v1/device-pairing/" + id, "", kT0, "", "ka").status, 200) << "still there";
    EXPECT_EQ(h.call("GET", "/api/v1/device-pairing/" + id, "", kT0, "", "kx").status, 401) << "unknown key";
}
