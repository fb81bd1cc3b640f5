// Seed 002 identity: attest, verify, replay, binding, age.
#include <gtest/gtest.h>

#include "harness.h"

using namespace dp;

namespace {

struct Signer : Harness {
    Signer() { settings.identity = Ed25519Identity::generate(); }
    // An attestation from POST /api/devices/attest, as verify expects it.
    std::string attest(const std::string& data, int64_t now = kT0) {
        Response r = call("POST", "/api/devices/attest", "{\"data\":" + data + "}", now, kOperator);
        EXPECT_EQ(r.status, 200) << r.body;
        std::string err;
        Json j = parse_json_object(r.body, &err);
        return json_compact(json_object_get(j.get(), "attestation"));
    }
    Response verify(const std::string& attestation, int64_t now, const std::string& extra = "") {
        return call("POST", "/api/devices/verify", "{\"attestation\":" + attestation + extra + "}", now);
    }
};

}  // namespace

TEST(Identity, AttestationVerifiesOnceThenIsAReplay) {
    Signer h;
    std::string a = h.attest("{\"purpose\":\"pairing\"}");
    Response first = h.verify(a, kT0 + 1000);
    EXPECT_EQ(field(first, "valid"), "true") << first.body;
    Response second = h.verify(a, kT0 + 2000);
    EXPECT_EQ(field(second, "valid"), "false");
    EXPECT_EQ(field(second, "reason"), "replay");
}

TEST(Identity, TamperedDataOrForeignKeyOrAgeFail) {
    Signer h;
    std::string a = h.attest("{\"amount\":1}");
    std::string tampered = a;
    tampered.replace(tampered.find("\"amount\":1"), 10, "\"amount\":2");
    EXPECT_EQ(field(h.verify(tampered, kT0), "reason"), "invalid_signature");

    std::string other_key = a;
    std::string pk = base64_encode(h.settings.identity->public_raw());
    other_key.replace(other_key.find(pk), pk.size(), base64_encode(Ed25519Identity::generate()->public_raw()));
    EXPECT_EQ(field(h.verify(other_key, kT0), "reason"), "device_id_mismatch");

    EXPECT_EQ(field(h.verify(a, kT0 + 300001), "reason"), "expired") << "default maxAgeMs is 5 minutes";
    EXPECT_EQ(field(h.verify(h.attest("{}", kT0 + 31000), kT0), "reason"), "future_timestamp");
    EXPECT_EQ(h.verify(a, kT0, ",\"maxAgeMs\":0").status, 400);
    EXPECT_EQ(h.verify(a, kT0, ",\"maxAgeMs\":86400001").status, 400);
}

TEST(Identity, WithoutAnIdentityTheRoutesAnswer501) {
    Harness h;
    EXPECT_EQ(h.call("GET", "/api/devices/identity", "", kT0).status, 501);
    EXPECT_EQ(h.call("POST", "/api/devices/attest", "{\"data\":{}}", kT0, kOperator).status, 501);
}

TEST(Identity, ALargerMaxAgeOnALaterVerifyIsStillAReplay) {
    Signer h;
    std::string a = h.attest("{}");
    EXPECT_EQ(field(h.verify(a, kT0 + 500, ",\"maxAgeMs\":1000"), "valid"), "true");
    Response again = h.verify(a, kT0 + 5000, ",\"maxAgeMs\":60000");
    EXPECT_EQ(field(again, "valid"), "false");
    EXPECT_EQ(field(again, "reason"), "replay");
    Response day = h.verify(a, kT0 + 86000000, ",\"maxAgeMs\":86400000");
    EXPECT_EQ(field(day, "reason"), "replay") << "kept as long as any maxAgeMs accepts it";
}

TEST(Identity, ExpectedDeviceIdIsHonoured) {
    Signer h;
    std::string a = h.attest("{}");
    Response r = h.verify(a, kT0, ",\"expectedDeviceId\":\"dev_0000000000000000\"");
    EXPECT_EQ(field(r, "valid"), "false");
    EXPECT_EQ(field(r, "reason"), "device_id_mismatch");
    r = h.verify(a, kT0, ",\"expectedDeviceId\":\"" + h.settings.identity->device_id() + "\"");
    EXPECT_EQ(field(r, "valid"), "true");
    EXPECT_EQ(h.verify(a, kT0, ",\"expectedDeviceId\":7").status, 400);
}

TEST(Identity, IntegersBeyond2To53AreRefusedAtAttestAndVerify) {
    Signer h;
    Response r = h.call("POST", "/api/devices/attest", "{\"data\":{\"amount\":9007199254740993}}", kT0, kOperator);
    EXPECT_EQ(r.status, 400);
    EXPECT_EQ(field(r, "code"), "invalid_request");
    std::string a = h.attest("{\"amount\":9007199254740991}");
    a.replace(a.find("9007199254740991"), 16, "9007199254740993");
    r = h.verify(a, kT0);
    EXPECT_EQ(r.status, 400);
    EXPECT_EQ(field(r, "code"), "invalid_request");
}

TEST(Identity, NoncesKeepToTheirShareOfTheZone) {
    Signer h;
    h.store.capacity = 200;  // nonces (40 bytes) may hold 1/8 of 200 x 128 bytes: 80
    int valid = 0;
    Response last;
    for (int i = 0; i < 200; i++) {
        h.addr.bytes[3] = (uint8_t)(i % 50);
        last = h.verify(h.attest("{}"), kT0);
        if (field(last, "valid") != "true") break;
        valid++;
    }
    EXPECT_EQ(last.status, 503);
    EXPECT_EQ(field(last, "code"), "quota_exceeded");
    EXPECT_LE(valid * sizeof(NonceRecord), 200 * 128 / 8u);
    EXPECT_EQ(h.pair(h.new_otp(kT0), kT0).status, 200) << "pairing still finds room";
}
