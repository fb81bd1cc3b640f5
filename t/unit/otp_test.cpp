// Seed 000: OTP pairing, lockout, burn, refresh.
#include <gtest/gtest.h>

#include "core/codes.h"
#include "harness.h"

using namespace dp;

TEST(Otp, SingleUseAndExpiry) {
    Harness h;
    h.settings.otp_ttl_ms = 600000;
    std::string otp = h.new_otp(kT0);
    ASSERT_EQ(otp.size(), 6u);
    Response r = h.pair(otp, kT0 + 1000);
    EXPECT_EQ(r.status, 200);
    EXPECT_EQ(field(r, "token").rfind("dp_tok_", 0), 0u);
    EXPECT_TRUE(r.durable);
    EXPECT_EQ(h.pair(otp, kT0 + 2000).status, 401);
    otp = h.new_otp(kT0);
    EXPECT_EQ(h.pair(otp, kT0 + 600000).status, 401) << "expired after the TTL";
    EXPECT_EQ(h.store.state().devices, 1u);
}

TEST(Otp, LockoutWindowRestartsOnEveryFailure) {
    Harness h;
    std::string otp = h.new_otp(kT0);
    std::string wrong = otp == "000000" ? "111111" : "000000";
    for (int i = 0; i < 5; i++) EXPECT_EQ(h.pair(wrong, kT0 + i).status, 401);
    Response r = h.pair(otp, kT0 + 10);
    EXPECT_EQ(r.status, 429);
    EXPECT_EQ(r.headers[0], (std::pair<std::string, std::string>("Retry-After", "60")));
    // 59 s after the locked attempt: still locked, and that attempt restarts the window.
    EXPECT_EQ(h.pair(otp, kT0 + 10 + 59000).status, 429);
    EXPECT_EQ(h.pair(otp, kT0 + 10 + 59000 + 59000).status, 429);
    // 60 s of quiet lifts it.
    EXPECT_EQ(h.pair(otp, kT0 + 10 + 59000 + 59000 + 60000).status, 200);
}

TEST(Otp, FailuresSpacedOverAMinuteDoNotLockOut) {
    Harness h;
    std::string otp = h.new_otp(kT0);
    std::string wrong = otp == "000000" ? "111111" : "000000";
    for (int i = 0; i < 8; i++) EXPECT_EQ(h.pair(wrong, kT0 + i * 61000LL).status, 401);
    EXPECT_EQ(h.pair(otp, kT0 + 9 * 61000LL).status, 200);
}

TEST(Otp, BurnedAfterTenFailuresFromAnyAddress) {
    Harness h;
    std::string otp = h.new_otp(kT0);
    std::string wrong = otp == "000000" ? "111111" : "000000";
    Response last;
    for (int i = 0; i < 10; i++) {
        h.addr.bytes[3] = (uint8_t)(10 + i);  // a new address each time: no lockout
        last = h.pair(wrong, kT0 + i);
        EXPECT_EQ(last.status, 401);
    }
    EXPECT_EQ(last.notices.size(), 1u);
    EXPECT_TRUE(last.banner.empty());
    h.addr.bytes[3] = 99;
    EXPECT_EQ(h.pair(otp, kT0 + 100).status, 401) << "burned";
    EXPECT_FALSE(otp_live(h.store, kT0 + 100));
    EXPECT_EQ(h.pair(h.new_otp(kT0 + 200), kT0 + 300).status, 200);
}

TEST(Otp, AFullZoneFailsClosedAndKeepsTheOtp) {
    Harness h;
    std::string otp = h.new_otp(kT0);
    h.store.capacity = 0;  // not even a limiter record fits
    Response r = h.pair(otp, kT0 + 1);
    EXPECT_EQ(r.status, 429) << "no room to count failures: refused, never unlimited guesses";
    h.store.capacity = 1;  // the limiter fits, the device does not
    r = h.pair(otp, kT0 + 2);
    EXPECT_EQ(r.status, 503);
    EXPECT_EQ(field(r, "code"), "zone_full");
    h.store.capacity = SIZE_MAX;
    EXPECT_EQ(h.pair(otp, kT0 + 3).status, 200) << "the failed attempts changed nothing";
}

TEST(Otp, OtpDigestDifferingInItsLastByteIsWrong) {
    Harness h;
    std::string otp = h.new_otp(kT0);
    h.locked([&] {
        Digest almost = last_byte_flipped(guessable_key(h.settings, "otp", otp));
        memcpy(h.store.otp_for_update().hash, almost.data(), 32);
        return 0;
    });
    EXPECT_EQ(h.pair(otp, kT0 + 1).status, 401);
}

TEST(Otp, MalformedBodiesAre400AndUnavailableTokenFileIs501) {
    Harness h;
    h.new_otp(kT0);
    EXPECT_EQ(h.call("POST", "/pair", "{\"otp\":123456}", kT0).status, 400);
    EXPECT_EQ(h.call("POST", "/pair", "{\"otp\":", kT0).status, 400);
    h.settings.operator_token_unavailable = true;
    Response r = h.call("POST", "/pair", "{\"otp\":\"123456\"}", kT0);
    EXPECT_EQ(r.status, 501);
    EXPECT_EQ(field(r, "error"), "Pairing not available");
}

TEST(Otp, RefreshIsOwnerOnly) {
    Harness h;
    std::string device = h.device();
    Response r = h.call("GET", "/pair/refresh", "", kT0, device);
    EXPECT_EQ(r.status, 403) << "a device must not mint itself an owner";
    EXPECT_EQ(r.body.find("otp\":"), std::string::npos);
    EXPECT_EQ(h.call("GET", "/pair/refresh", "", kT0, h.owner()).status, 200);
    EXPECT_EQ(h.call("GET", "/pair/refresh", "", kT0, kOperator).status, 200);
}

TEST(Otp, RefreshWithABadHostIs400AndKeepsTheOtp) {
    Harness h;
    std::string otp = h.new_otp(kT0);
    for (const char* host : {"\xff", "x$hostx", "a b", "gw/../x", "gw:99999x", ""}) {
        Request req;
        req.method = "GET";
        req.path = "/pair/refresh";
        req.authorization = kOperator;
        req.host = host;
        req.now_ms = kT0;
        Response r = api_handle(h.store, h.settings, api_route("GET", "/pair/refresh"), req, h.addr);
        EXPECT_EQ(r.status, 400) << host;
        EXPECT_EQ(field(r, "code"), "invalid_host") << host;
    }
    EXPECT_EQ(h.pair(otp, kT0 + 1).status, 200) << "the OTP did not rotate";
}

TEST(Otp, TheBurnIsAChangeToPersist) {
    Harness h;
    std::string otp = h.new_otp(kT0);
    std::string wrong = otp == "000000" ? "111111" : "000000";
    for (int i = 0; i < 9; i++) {
        h.addr.bytes[3] = (uint8_t)(10 + i);
        h.pair(wrong, kT0 + i);
    }
    const uint64_t before = h.store.state().dirty;
    h.addr.bytes[3] = 50;
    Response burn = h.pair(wrong, kT0 + 20);
    ASSERT_EQ(burn.notices.size(), 1u);
    EXPECT_GT(h.store.state().dirty, before);
    EXPECT_TRUE(h.store.state().otp.burned);
}

TEST(Otp, TheStartupUrlComesFromTheListenAddressAndAReadServerName) {
    std::vector<std::string> warnings;
    EXPECT_EQ(startup_url({{"127.0.0.1:3001"}}, {""}, "box", &warnings), "http://127.0.0.1:3001");
    EXPECT_TRUE(warnings.empty()) << "an exact address is no guess";
    EXPECT_EQ(startup_url({{"192.168.1.5:80"}}, {"_"}, "box", &warnings), "http://192.168.1.5");
    EXPECT_EQ(startup_url({{"0.0.0.0:8443", true, true}}, {"gw.example.org"}, "box", &warnings), "https://gw.example.org:8443");
    EXPECT_TRUE(warnings.empty());
    EXPECT_EQ(startup_url({{"[::1]:3001"}}, {"localhost"}, "box", &warnings), "http://[::1]:3001");
    EXPECT_EQ(startup_url({{"0.0.0.0:3001", false, true}}, {""}, "box.lan", &warnings), "http://box.lan:3001");
    ASSERT_EQ(warnings.size(), 1u) << "a wildcard listen is a guess";
    EXPECT_NE(warnings[0].find("device_pairing_url"), std::string::npos);
    warnings.clear();
    EXPECT_EQ(startup_url({{"10.0.0.1:81"}}, {"a.example", "b.example"}, "box", &warnings), "http://a.example:81");
    EXPECT_EQ(warnings.size(), 1u) << "several names are a guess";
}

// Reading the zone, the state file or Redis must not let anyone test OTP or
// code guesses offline: both are stored as HMACs under the zone's key.
TEST(Otp, OtpsAndCodesAreStoredAsMacsUnderTheZonesKey) {
    Harness h;
    h.settings.secret_key = sha256("key one");
    std::string otp = h.new_otp(kT0);
    const OtpState stored = h.store.state().otp;
    EXPECT_EQ(memcmp(stored.hash, hmac_labeled(h.settings.secret_key, "otp", otp).data(), 32), 0);
    EXPECT_NE(memcmp(stored.hash, sha256_labeled("otp", otp).data(), 32), 0) << "not an unkeyed hash";

    // The same stored OTP under another key does not verify.
    Harness other;
    other.settings.secret_key = sha256("key two");
    other.locked([&] { return other.store.otp_for_update() = stored; });
    EXPECT_EQ(other.pair(otp, kT0 + 1).status, 401);
    EXPECT_EQ(h.pair(otp, kT0 + 1).status, 200);

    Response req = h.call("POST", "/api/devices/pairing/request", "", kT0);
    const std::string id = field(req, "requestId"), code = field(req, "code");
    h.locked([&] {
        auto* rec = as<CodeRequestRecord>(h.store.find(Kind::CodeRequest, key_of("request", id)));
        EXPECT_EQ(memcmp(rec->code_hash, hmac_labeled(h.settings.secret_key, "code", normalize_code(code)).data(), 32), 0);
        EXPECT_NE(memcmp(rec->code_hash, sha256_labeled("code", normalize_code(code)).data(), 32), 0);
        return 0;
    });
}
